# Release image: imgbuild and a runc with the 2024/2025 escape fixes, nothing
# else. Build context is the repo root after `make build runc` (which put
# bin/imgbuild, bin/runc and bin/ca-certificates.crt there); .dockerignore
# sends only those. FROM scratch, so it builds offline:
#
#   make build runc
#   bin/imgbuild build -t REGISTRY/imgbuild:dev --push .
FROM scratch

COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY bin/runc /usr/local/bin/runc
COPY bin/imgbuild /usr/local/bin/imgbuild

ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENTRYPOINT ["/usr/local/bin/imgbuild"]
