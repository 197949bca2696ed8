// Command benchtool is the measuring half of `make bench` (hack/bench/bench.sh).
//
//	benchtool measure [--pid PID]... [--out FILE] -- CMD [ARG...]
//	    runs CMD and appends "WALL_SECONDS PEAK_RSS_KIB EXIT_CODE" to FILE
//	    (stdout without --out). Peak RSS is the largest sum of VmRSS over CMD's
//	    process tree plus each --pid's tree (an already running daemon),
//	    sampled every 20 ms. Shared pages count once per process, as in ps.
//	benchtool proxy --listen ADDR --upstream URL
//	    a reverse proxy that counts request-body bytes (blob and manifest
//	    uploads); GET /_bench/bytes returns the running total.
//	benchtool pod create --manifest JOB.yaml --dir BUNDLE (--layout OCI | --rootfs DIR) [--env K=V]... [--workdir D] [--secret NAME/KEY=VALUE]... [--workspace CTX] -- ARGV...
//	    writes a runc bundle for the pod of JOB.yaml (hack/k8s; internal/podsim,
//	    as the e2e tests derive it) running ARGV, its root filesystem from an
//	    OCI layout's one image or a copy of DIR, CTX copied into its workspace.
//	benchtool pod run [--runc PATH] BUNDLE
//	    runs that pod to its end and removes the cgroups runc leaves.
//	benchtool report RAW
//	    prints markdown tables of medians and imgbuild/competitor ratios from
//	    bench.sh's raw.tsv (workload scenario tool run wall rss bytes exit).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fatal(errors.New("usage: benchtool measure|proxy|pod|report"))
	}
	var err error
	switch os.Args[1] {
	case "measure":
		err = measure(os.Args[2:])
	case "proxy":
		err = proxy(os.Args[2:])
	case "pod":
		err = pod(os.Args[2:])
	case "report":
		if len(os.Args) != 3 {
			err = errors.New("report RAW")
		} else {
			err = report(os.Args[2], os.Stdout)
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "benchtool: %v\n", err)
	os.Exit(2)
}

type pidList []int

func (p *pidList) String() string { return fmt.Sprint(*p) }
func (p *pidList) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	*p = append(*p, n)
	return nil
}

func measure(args []string) error {
	fs := flag.NewFlagSet("measure", flag.ContinueOnError)
	var extra pidList
	fs.Var(&extra, "pid", "also count this process's tree (repeatable)")
	out := fs.String("out", "", "append the result line to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("measure: no command")
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Forward interrupts so a ^C in bench.sh reaches the measured tree.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	roots := append([]int{cmd.Process.Pid}, extra...)
	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if kib := treeRSS(roots); kib > peak.Load() {
				peak.Store(kib)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	werr := cmd.Wait()
	wall := time.Since(start)
	close(done)
	<-sampled
	code := 0
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			return werr
		}
		code = ee.ExitCode()
	}
	line := fmt.Sprintf("%.3f %d %d\n", wall.Seconds(), peak.Load(), code)
	if *out == "" {
		fmt.Print(line)
	} else {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(line); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if code != 0 {
		os.Exit(code)
	}
	return nil
}

// treeRSS sums VmRSS (KiB) over roots and all their descendants.
func treeRSS(roots []int) int64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	children := map[int][]int{}
	rss := map[int]int64{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may hold spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0]=state f[1]=ppid ... f[21]=rss (pages)
		if len(f) < 22 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pages, _ := strconv.ParseInt(f[21], 10, 64)
		children[ppid] = append(children[ppid], pid)
		rss[pid] = pages * int64(os.Getpagesize()) / 1024
	}
	seen := map[int]bool{}
	var total int64
	stack := append([]int(nil), roots...)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		total += rss[p]
		stack = append(stack, children[p]...)
	}
	return total
}

func proxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := fs.String("upstream", "", "registry URL, e.g. http://127.0.0.1:5001")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("proxy: bad --upstream %q", *upstream)
	}
	var uploaded atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_bench/bytes" {
			fmt.Fprintln(w, uploaded.Load())
			return
		}
		if r.Body != nil && (r.Method == http.MethodPut || r.Method == http.MethodPatch || r.Method == http.MethodPost) {
			r.Body = &countingBody{ReadCloser: r.Body, n: &uploaded}
		}
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type cellKey struct{ wl, sc, tool string }

type cell struct {
	wall, rss, bytes []float64
	runs, failed     int
}

func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	ys := append([]float64(nil), xs...)
	sort.Float64s(ys)
	if len(ys)%2 == 1 {
		return ys[len(ys)/2]
	}
	return (ys[len(ys)/2-1] + ys[len(ys)/2]) / 2
}

func report(raw string, w io.Writer) error {
	b, err := os.ReadFile(raw)
	if err != nil {
		return err
	}
	cells := map[cellKey]*cell{}
	type rowKey struct{ wl, sc string }
	var rows []rowKey
	seenRow := map[rowKey]bool{}
	var tools []string
	seenTool := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 8 {
			continue
		}
		k := cellKey{f[0], f[1], f[2]}
		rk := rowKey{f[0], f[1]}
		if !seenRow[rk] {
			seenRow[rk] = true
			rows = append(rows, rk)
		}
		if !seenTool[f[2]] && f[2] != "crane" {
			seenTool[f[2]] = true
			tools = append(tools, f[2])
		}
		c := cells[k]
		if c == nil {
			c = &cell{}
			cells[k] = c
		}
		c.runs++
		if f[7] != "0" {
			c.failed++
			continue
		}
		wall, _ := strconv.ParseFloat(f[4], 64)
		rss, _ := strconv.ParseFloat(f[5], 64)
		by, _ := strconv.ParseFloat(f[6], 64)
		c.wall = append(c.wall, wall)
		c.rss = append(c.rss, rss/1024)
		c.bytes = append(c.bytes, by/1e6)
	}
	// imgbuild first, the competitors in the order they ran.
	sort.SliceStable(tools, func(i, j int) bool { return tools[i] == "imgbuild" && tools[j] != "imgbuild" })

	table := func(title, unit string, get func(*cell) []float64, ratios bool) {
		fmt.Fprintf(w, "### %s\n\n", title)
		fmt.Fprintf(w, "| workload | scenario |")
		for _, t := range tools {
			fmt.Fprintf(w, " %s |", t)
		}
		fmt.Fprintf(w, "\n|---|---|%s\n", strings.Repeat("---:|", len(tools)))
		for _, r := range rows {
			if r.sc == "push" {
				continue
			}
			fmt.Fprintf(w, "| %s | %s |", r.wl, r.sc)
			ours := math.NaN()
			if c := cells[cellKey{r.wl, r.sc, "imgbuild"}]; c != nil {
				ours = medianOf(get(c))
			}
			for _, t := range tools {
				c := cells[cellKey{r.wl, r.sc, t}]
				if c == nil {
					fmt.Fprintf(w, " – |")
					continue
				}
				m := medianOf(get(c))
				s := "failed"
				if !math.IsNaN(m) {
					s = fmt.Sprintf("%.*f%s", prec(m), m, unit)
					if ratios && t != "imgbuild" && !math.IsNaN(ours) && m > 0 {
						s += fmt.Sprintf(" (**%.2f×**)", ours/m)
					}
				}
				if c.failed > 0 {
					s += fmt.Sprintf(" [%d/%d failed]", c.failed, c.runs)
				}
				fmt.Fprintf(w, " %s |", s)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
	table("Wall time, median (imgbuild ÷ competitor)", " s", func(c *cell) []float64 { return c.wall }, true)
	table("Peak RSS of the process tree, median (imgbuild ÷ competitor)", " MiB", func(c *cell) []float64 { return c.rss }, true)
	table("Bytes uploaded to the registry, median", " MB", func(c *cell) []float64 { return c.bytes }, false)

	ib, cr := cells[cellKey{"big300", "push", "imgbuild"}], cells[cellKey{"big300", "push", "crane"}]
	if ib != nil && cr != nil && len(ib.wall) > 0 && len(cr.wall) > 0 {
		iw, cw := medianOf(ib.wall), medianOf(cr.wall)
		imb, cmb := medianOf(ib.bytes), medianOf(cr.bytes)
		fmt.Fprintf(w, "### 300 MB layer push: imgbuild (warm cache, new repository) vs crane push of the same blobs\n\n")
		fmt.Fprintf(w, "| tool | wall | uploaded | throughput |\n|---|---:|---:|---:|\n")
		fmt.Fprintf(w, "| imgbuild | %.2f s | %.1f MB | %.1f MB/s |\n", iw, imb, imb/iw)
		fmt.Fprintf(w, "| crane | %.2f s | %.1f MB | %.1f MB/s |\n\n", cw, cmb, cmb/cw)
		fmt.Fprintf(w, "imgbuild reaches **%.0f %%** of crane's throughput.\n\n", 100*(imb/iw)/(cmb/cw))
	}
	return nil
}

func prec(x float64) int {
	switch {
	case x >= 100:
		return 0
	case x >= 10:
		return 1
	default:
		return 2
	}
}
