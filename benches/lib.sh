# Shared by the bench scripts that run servers on loopback: sourced, not run.

# mixed_data DIR: the mixed data set (/usr/include, /usr/share/doc, 200 MiB random, shared
# libraries; about 600 MiB to 1.4 GiB, depending on the machine) into DIR, unless it exists.
mixed_data() {
  local data=$1
  [ -d "$data" ] && return 0
  mkdir -p "$data/random" "$data/lib"
  cp -a /usr/include "$data/include" 2>/dev/null || true
  cp -a /usr/share/doc "$data/doc" 2>/dev/null || true
  for i in $(seq 1 20); do head -c 10M /dev/urandom > "$data/random/r$i"; done
  # `head` closes the pipe early: find's SIGPIPE is expected here.
  (set +o pipefail; find /usr/lib -name '*.so*' -type f -size +100k 2>/dev/null | head -300 | while read -r f; do
    cp "$f" "$data/lib/$(echo "$f" | tr / _)"
  done)
}

# loopback_tls DIR: a private CA (ca.pem) and a certificate for localhost and 127.0.0.1
# (server.pem, its key as server.key and, PKCS#8, server.p8) in DIR.
loopback_tls() {
  local tls=$1
  mkdir -p "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$tls/ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext" -out "$tls/server.pem" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$tls/server.key" -out "$tls/server.p8"
}

# bench_inputs [DIR]: what a loopback bench starts from, in $WORK: the data (DIR, else the mixed
# data set made in $WORK/data) as `data` (absolute) and its size as `bytes`, and the TLS files
# (`loopback_tls`) in `tls`.
bench_inputs() {
  data="${1:-$WORK/data}"
  mixed_data "$data"
  data=$(realpath "$data")
  bytes=$(du -sb "$data" | cut -f1)
  echo "data: $(du -sh "$data" | cut -f1) in $(find "$data" -type f | wc -l) files" >&2
  tls="$WORK/tls"
  loopback_tls "$tls"
}
