//go:build linux

package embedded

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/moby/buildkit/cache/metadata"
	"github.com/moby/buildkit/util/network"
	bolt "go.etcd.io/bbolt"
)

func TestLazyProxyProviderClosedBeforeUse(t *testing.T) {
	l := &lazyProxyProvider{}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if l.p != nil {
		t.Fatal("Close created the proxy provider")
	}
	if _, err := l.NewProxy(t.Context(), &network.ProxyConfig{}); err == nil {
		t.Fatal("NewProxy after Close: want an error")
	}
}

// TestSetNoSync fails when a BuildKit upgrade changes boltutil.DB so that
// metadata_v2.db would quietly go back to an fdatasync per transaction.
func TestSetNoSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metadata_v2.db")
	md, err := metadata.NewStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := setNoSync(md.DB()); err != nil {
		t.Fatalf("setNoSync: %v", err)
	}
	bdb := (*bolt.DB)(reflect.ValueOf(md.DB()).Elem().FieldByName("bdb").UnsafePointer())
	if !bdb.NoSync {
		t.Fatal("NoSync not set on the open database")
	}
	err = md.DB().Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := md.Close(); err != nil {
		t.Fatal(err)
	}
	// What was written without syncs is there after Close.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("b")); b == nil || string(b.Get([]byte("k"))) != "v" {
			return fmt.Errorf("record lost")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := setNoSync(nil); err == nil {
		t.Error("setNoSync(nil) succeeded")
	}
}
