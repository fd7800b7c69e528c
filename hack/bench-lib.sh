# shellcheck shell=bash
# Helpers shared by the hack/bench*.sh scripts (sourced). They read the
# caller's globals: blob (file), digest, bytes (its size), runs.
# shellcheck disable=SC2154  # those globals are set by the sourcing script

# Wait until something answers HTTP at the base URL $1.
wait_url() {
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "$1/"; then return 0; fi
    sleep 0.05
  done
  echo "${0##*/}: nothing answers at $1" >&2; return 1
}

# Wait until something answers HTTP on 127.0.0.1:$1.
wait_port() { wait_url "http://127.0.0.1:$1"; }

# CNCF distribution serving a filesystem store under $1 on port $2, in the
# background of the calling shell (its pid is then in $!).
start_distribution_fs() { # work-dir port
  cat >"$1/distribution.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $1/distribution}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$2}
YAML
  "$QUARRY_TOOL_DISTRIBUTION" serve "$1/distribution.yml" >"$1/distribution.log" 2>&1 &
}

# MinIO with its data under $1/minio on port $2, root user $3 / password $4,
# in the background of the calling shell (its pid is then in $!).
start_minio() { # work-dir port user password
  MINIO_ROOT_USER=$3 MINIO_ROOT_PASSWORD=$4 MINIO_BROWSER=off MINIO_UPDATE=off HOME=$1 \
    "$QUARRY_TOOL_MINIO" server --quiet --address "127.0.0.1:$2" --console-address "127.0.0.1:$(($2 + 50))" "$1/minio" \
    >"$1/minio.log" 2>&1 &
}

# Once MinIO on port $1 is ready, create the buckets named after the credentials.
make_buckets() { # port user password bucket...
  local port=$1 user=$2 password=$3 bucket code
  shift 3
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/minio/health/ready"; then break; fi
    sleep 0.1
  done
  for bucket in "$@"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$user:$password" \
      -X PUT "http://127.0.0.1:$port/$bucket")
    [ "$code" = 200 ] || { echo "${0##*/}: creating bucket $bucket in MinIO answered $code" >&2; return 1; }
  done
}

# The registry config of a Quarry on bucket $4 of the MinIO on port $1 (Quay's keys).
quarry_s3_config() { # port user password bucket
  cat <<YAML
DISTRIBUTED_STORAGE_CONFIG:
  s3: [S3Storage, {host: 127.0.0.1, port: $1, is_secure: false, s3_bucket: $4, storage_path: /registry, s3_access_key: $2, s3_secret_key: $3}]
DISTRIBUTED_STORAGE_PREFERENCE: [s3]
YAML
}

# CNCF distribution on bucket $5 of the MinIO on port $2, listening on
# port $6, config and log in $1, in the background (pid in $!).
start_distribution_s3() { # work-dir minio-port user password bucket port
  cat >"$1/distribution-s3.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  s3:
    accesskey: $3
    secretkey: $4
    region: us-east-1
    regionendpoint: http://127.0.0.1:$2
    bucket: $5
    forcepathstyle: true
    secure: false
    rootdirectory: /registry
  delete: {enabled: true}
  redirect: {disable: true}
http: {addr: 127.0.0.1:$6}
YAML
  "$QUARRY_TOOL_DISTRIBUTION" serve "$1/distribution-s3.yml" >"$1/distribution-s3.log" 2>&1 &
}

# MiB/s for $bytes moved in $1 seconds.
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN{ if (s <= 0) print "n/a"; else printf "%.0f", b / 1048576 / s }'; }
best() { sort -g | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0 || b == "n/a") print "n/a"; else printf "%.2f", a / b }'; }

# The absolute URL of an upload session's Location, with ?digest= added.
session_url() { # base location digest
  local url
  case "$2" in http*) url=$2 ;; *) url=$1$2 ;; esac
  case "$url" in *\?*) echo "$url&digest=$3" ;; *) echo "$url?digest=$3" ;; esac
}

# POST a session; print its Location.
start_session() { # base repo
  curl -s -D - -o /dev/null -X POST "$1/v2/$2/blobs/uploads/" | awk 'tolower($1)=="location:"{print $2}' | tr -d '\r'
}

# POST a session, then PUT the whole body: the one upload form every peer takes.
push_once() { # base repo
  local url
  url=$(session_url "$1" "$(start_session "$1" "$2")" "$digest")
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X PUT -H 'Content-Type: application/octet-stream' -T "$blob" "$url"
}

push_best() { # base
  local base=$1 out code times=()
  for i in $(seq 1 "$runs"); do
    out=$(push_once "$base" "bench/push$i"); code=${out% *}
    [ "$code" = 201 ] || { echo "bench: push to $base answered $code" >&2; exit 1; }
    times+=("${out#* }")
  done
  printf '%s\n' "${times[@]}" | best
}

pull_best() { # url
  local out code times=()
  for _ in $(seq 1 "$runs"); do
    out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "$1")
    code=${out% *}; [ "$code" = 200 ] || { echo "bench: GET $1 answered $code" >&2; exit 1; }
    times+=("${out#* }")
  done
  printf '%s\n' "${times[@]}" | best
}
