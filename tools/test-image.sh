#!/usr/bin/env bash
# Tests the container image that tools/build-image.sh assembles (run by tools/run-tests.sh, so by `make test`):
#
#  1. builds the static release binary and the image (into target/image/), then the image again elsewhere:
#     the two builds must give the same layer, config and manifest digests (reproducible);
#  2. pushes the OCI layout to crane's own registry on 127.0.0.1 (which checks the layout), then with crane:
#     the manifest (OCI, one gzip layer), the config (user 65532:65532, entrypoint, cmd, platform, labels);
#  3. unpacks the root file system (`crane export`) and checks its files: the binary has no dynamic section,
#     /etc/passwd and /etc/group name 65532, the CA bundle is Debian's, owners and modes;
#  4. runs the binary's `--version` and `crd` from the unpacked root file system: directly, then (as root)
#     chrooted as user 65532 with only the image's files, where it also resolves a host name through
#     /etc/hosts and through a DNS server (a throwaway one on 127.0.0.1:53), and completes a TLS handshake
#     with a throwaway HTTPS server: what a static glibc binary could get wrong;
#  5. runs it in a real OCI runtime (runc, from Debian's packages when missing) if the machine allows it, and
#     says so when it does not.
#
# Needs: cargo, go (tools/crane.sh builds crane once), python3, openssl, readelf. Root for steps 4b and 5.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[test-image] %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
ok() { log "ok: $*"; }

echo "== the container image: built twice without a container engine, inspected, unpacked and run"
crane=$(tools/crane.sh | tail -n1)
work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A source URL, so that the label's plumbing is checked too (a release sets AEP_IMAGE_SOURCE the same way).
export AEP_IMAGE_SOURCE=${AEP_IMAGE_SOURCE:-https://example.invalid/aep-streaming-operator}
target_dir=${CARGO_TARGET_DIR:-target}

# ---------------------------------------------------------------- 1. build twice
started=$SECONDS
digest=$(tools/build-image.sh --out "$target_dir/image" | tail -n1)
log "first build (release binary included): $((SECONDS - started)) s"
started=$SECONDS
again=$(tools/build-image.sh --out "$work/again" | tail -n1)
log "second build (binary up to date): $((SECONDS - started)) s"
layout=$target_dir/image/oci
[[ $digest == sha256:* ]] || fail "build-image.sh printed no digest: '$digest'"
[[ $digest == "$again" ]] || fail "two builds of the same sources differ: $digest vs $again"
diff -r "$layout" "$work/again/oci" >/dev/null || fail "the two OCI layouts differ"
cmp -s "$target_dir/image/image.tar" "$work/again/image.tar" || fail "the two image tarballs differ"
# The tarball holds the same image as the layout: the same config blob, and the plain tag.
python3 - "$target_dir/image/image.tar" "$layout" <<'PY' || fail "the tarball and the OCI layout hold different images"
import json, sys, tarfile
tarball, layout = sys.argv[1], sys.argv[2]
[entry] = json.load(tarfile.open(tarball).extractfile("manifest.json"))
index = json.load(open(f"{layout}/index.json"))
manifest_digest = index["manifests"][0]["digest"].split(":")[1]
manifest = json.load(open(f"{layout}/blobs/sha256/{manifest_digest}"))
assert entry["Config"] == manifest["config"]["digest"], (entry["Config"], manifest["config"]["digest"])
assert [tag.split(":")[0] for tag in entry["RepoTags"]] == ["aep-streaming-operator"], entry["RepoTags"]
PY
ok "reproducible: two builds give the same OCI layout and tarball ($digest)"

# ---------------------------------------------------------------- 2. crane's view
"$crane" registry serve --address 127.0.0.1:0 >"$work/registry.log" 2>&1 &
pids+=($!)
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*serving on port \([0-9]\+\).*/\1/p' "$work/registry.log" | head -n1)
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || fail "crane registry serve did not start: $(cat "$work/registry.log")"
ref=127.0.0.1:$port/aep-streaming-operator:test
"$crane" push "$layout" "$ref" >/dev/null 2>"$work/push.log" || fail "crane push of the OCI layout: $(cat "$work/push.log")"
[[ $("$crane" digest "$ref") == "$digest" ]] || fail "the pushed image has another digest than the layout"
"$crane" validate --remote "$ref" >/dev/null 2>"$work/validate.log" || fail "crane validate: $(cat "$work/validate.log")"
"$crane" manifest "$ref" >"$work/manifest.json"
"$crane" config "$ref" >"$work/config.json"
version_line=$("$target_dir/x86_64-unknown-linux-gnu/release/aep-streaming-operator" --version)
python3 - "$work/manifest.json" "$work/config.json" "${version_line##* }" "$(git rev-parse HEAD)" "$AEP_IMAGE_SOURCE" <<'PY'
import json, sys

manifest = json.load(open(sys.argv[1]))
config = json.load(open(sys.argv[2]))
version, head, source = sys.argv[3], sys.argv[4], sys.argv[5]
problems = []
def expect(what, got, wanted):
    if got != wanted:
        problems.append(f"{what}: {got!r}, expected {wanted!r}")

expect("manifest mediaType", manifest.get("mediaType"), "application/vnd.oci.image.manifest.v1+json")
expect("config mediaType", manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json")
expect("layer media types", [l["mediaType"] for l in manifest["layers"]],
       ["application/vnd.oci.image.layer.v1.tar+gzip"])
expect("os/architecture", (config.get("os"), config.get("architecture")), ("linux", "amd64"))
c = config["config"]
expect("User", c.get("User"), "65532:65532")
expect("Entrypoint", c.get("Entrypoint"), ["/aep-streaming-operator"])
expect("Cmd", c.get("Cmd"), ["run"])
expect("ExposedPorts", c.get("ExposedPorts"), {"8080/tcp": {}})
labels = c.get("Labels") or {}
expect("title label", labels.get("org.opencontainers.image.title"), "aep-streaming-operator")
expect("version label", labels.get("org.opencontainers.image.version"), version)
if labels.get("org.opencontainers.image.revision") not in (head, head + "-dirty"):
    problems.append(f"revision label {labels.get('org.opencontainers.image.revision')!r} is not HEAD {head}")
expect("licenses label", labels.get("org.opencontainers.image.licenses"), "Apache-2.0")
expect("source label", labels.get("org.opencontainers.image.source"), source)
if not labels.get("org.opencontainers.image.created", "").endswith("Z"):
    problems.append(f"created label: {labels.get('org.opencontainers.image.created')!r}")
if problems:
    sys.exit("\n".join(problems))
print(f"1 layer, user {c['User']}, entrypoint {c['Entrypoint']} cmd {c['Cmd']}, {len(labels)} labels")
PY
ok "manifest and config (crane manifest / crane config)"

# ---------------------------------------------------------------- 3. the root file system
rootfs=$work/rootfs
mkdir -p "$rootfs"
# As root, tar keeps the recorded owners (65532 for /home/nonroot): the chroot below depends on them.
"$crane" export "$ref" - | tar -x -C "$rootfs" --same-permissions
tar_listing=$("$crane" export "$ref" - | tar -tv --numeric-owner)
binary=$rootfs/aep-streaming-operator
[[ -x $binary ]] || fail "no executable /aep-streaming-operator in the image"
if readelf --dynamic "$binary" | grep -q NEEDED; then fail "the binary links shared libraries"; fi
readelf --program-headers "$binary" | grep -q INTERP && fail "the binary asks for a program interpreter"
grep -qx 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' "$rootfs/etc/passwd" || fail "no user 65532 in /etc/passwd"
grep -qx 'nonroot:x:65532:' "$rootfs/etc/group" || fail "no group 65532 in /etc/group"
cmp -s "$rootfs/etc/ssl/certs/ca-certificates.crt" /etc/ssl/certs/ca-certificates.crt || fail "the CA bundle is not Debian's"
certificates=$(grep -c 'BEGIN CERTIFICATE' "$rootfs/etc/ssl/certs/ca-certificates.crt")
((certificates > 100)) || fail "only $certificates certificates in the CA bundle"
grep -Eq '^drwx------ 65532/65532 .* home/nonroot/?$' <<<"$tar_listing" || fail "/home/nonroot is not 0700 65532:65532"
grep -Eq '^drwxrwxrwt 0/0 .* tmp/?$' <<<"$tar_listing" || fail "/tmp is not 1777 root"
others=$(grep -Ev ' 0/0 | home/nonroot/?$' <<<"$tar_listing" || true)
[[ -z $others ]] || fail "entries not owned by root: $others"
ok "root file system: static binary ($(du -h "$binary" | cut -f1)), passwd/group with 65532, $certificates CA certificates, owners and modes"

# The Dockerfile builds the same image for those with a container engine (it cannot be built here): its files,
# user, entrypoint, command, port and label names must be the ones just checked.
python3 - Dockerfile "$rootfs" "$work/config.json" <<'PY'
import json, re, sys

dockerfile, rootfs, config_path = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(dockerfile).read()
config = json.load(open(config_path))["config"]
problems = []
heredocs = re.findall(r"^COPY [^<\n]*<<EOF (/rootfs/\S+)\n(.*?)^EOF$", text, re.M | re.S)
for path, content in heredocs:
    inside = path[len("/rootfs"):]
    if open(rootfs + inside).read() != content:
        problems.append(f"{inside} differs between the Dockerfile and tools/build-image.sh")
if {path for path, _ in heredocs} != {"/rootfs/etc/passwd", "/rootfs/etc/group", "/rootfs/etc/nsswitch.conf"}:
    problems.append(f"the Dockerfile writes {sorted(p for p, _ in heredocs)}, not passwd, group and nsswitch.conf")
final = text[text.rindex("\nFROM "):]
expected = {
    "USER": config["User"],
    "ENTRYPOINT": json.dumps(config["Entrypoint"]),
    "CMD": json.dumps(config["Cmd"]),
    "EXPOSE": " ".join(port.split("/")[0] for port in config["ExposedPorts"]),
    "WORKDIR": config["WorkingDir"],
}
for instruction, value in expected.items():
    if not re.search(rf"^{instruction} {re.escape(value)}$", final, re.M):
        problems.append(f"the Dockerfile's final stage has no `{instruction} {value}`")
if "FROM scratch" not in final or "COPY --from=builder /rootfs/ /" not in final:
    problems.append("the Dockerfile's final stage is not FROM scratch with the builder's /rootfs")
for needed in ["install -d -m 0700 -o 65532 -g 65532 /rootfs/home/nonroot", "install -d -m 1777 /rootfs/tmp",
               "/etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt",
               'RUSTFLAGS="-C target-feature=+crt-static"']:
    if needed not in text:
        problems.append(f"the Dockerfile lacks `{needed}`")
labels = set(re.findall(r"(org\.opencontainers\.image\.[a-z]+)=", final))
if labels != set(config["Labels"]):
    problems.append(f"labels: the Dockerfile sets {sorted(labels)}, the image has {sorted(config['Labels'])}")
if problems:
    sys.exit("\n".join(problems))
PY
ok "the Dockerfile builds the same files, user, entrypoint, command, port and labels"

# ---------------------------------------------------------------- 4. run it from the root file system
[[ $("$binary" --version) == "$version_line" ]] || fail "--version from the root file system: $("$binary" --version)"
"$binary" crd | grep -c '^kind: CustomResourceDefinition$' | grep -qx 2 || fail "\`crd\` does not print the two CRDs"
ok "ran directly: $("$binary" --version); \`crd\` prints both CRDs"

if ((EUID != 0)); then
  log "not root: skipping the chroot as user 65532 (DNS, TLS) and the OCI runtime"
  exit 0
fi

in_image() { # runs the image's binary chrooted in the root file system as 65532:65532, with $@ as arguments
  chroot --userspec=65532:65532 "$rootfs" /aep-streaming-operator "$@"
}
[[ $(in_image --version) == "$version_line" ]] || fail "--version in a chroot as 65532"
ok "ran in a chroot of the image as 65532:65532: $(in_image --version)"

# An HTTPS "API server" on loopback, with a CA of its own, answering every request 403 with a Status whose
# message only it knows: the operator prints that message only after resolving the name, connecting, and
# verifying the certificate (rustls, statically linked) of a server named in a kubeconfig.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=aep-image-test-ca -keyout "$work/ca.key" \
  -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=apiserver -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:apiserver.aep-image-test,DNS:resolved-by-dns.aep-image-test\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 1 \
  -extfile "$work/san.ext" -out "$work/server.crt" 2>/dev/null
python3 - "$work" >"$work/https.log" 2>&1 <<'PY' &
import http.server, json, ssl, sys
work = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                           "code": 403, "message": "the image test server refuses politely"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(f"{work}/server.crt", f"{work}/server.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
pids+=($!)
https_port=
for _ in $(seq 1 100); do
  https_port=$(head -n1 "$work/https.log" 2>/dev/null || true)
  [[ $https_port =~ ^[0-9]+$ ]] && break
  https_port=
  sleep 0.1
done
[[ -n $https_port ]] || fail "the test HTTPS server did not start: $(cat "$work/https.log")"

# The files a container runtime mounts into a container: /etc/hosts, /etc/resolv.conf (the image has neither).
printf '127.0.0.1 localhost apiserver.aep-image-test\n' >"$rootfs/etc/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:2 attempts:1\n' >"$rootfs/etc/resolv.conf"
kubeconfig_for() { # host -> a kubeconfig in the root file system pointing at the test server by that name
  cat >"$rootfs/tmp/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://$1:$https_port", certificate-authority-data: $(base64 -w0 "$work/ca.crt")}}]
users: [{name: test, user: {token: not-a-secret}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
EOF
  chmod 0644 "$rootfs/tmp/kubeconfig"
}
operator_in_image() { # host -> what `run` prints before it gives up (it must give up: the server refuses)
  kubeconfig_for "$1"
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin KUBECONFIG=/tmp/kubeconfig RUST_LOG=error timeout 60 \
    chroot --userspec=65532:65532 "$rootfs" /aep-streaming-operator run --log-format text 2>&1 || true
}
answer=$(operator_in_image apiserver.aep-image-test)
grep -q 'the image test server refuses politely' <<<"$answer" \
  || fail "no TLS conversation with a server named in /etc/hosts: $answer"
ok "in the image: /etc/hosts lookup, TLS handshake and certificate check, HTTP (the server's 403 came back)"

# A DNS server on 127.0.0.1:53 that answers every A query with 127.0.0.1, so that the name below resolves only
# through /etc/resolv.conf and the DNS protocol (glibc's built-in nss_dns).
# It exits at once when the port cannot be bound; the check is then skipped with a note.
python3 - >"$work/dns.log" 2>&1 <<'PY' &
import socket, struct
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
print("listening", flush=True)
while True:
    query, client = sock.recvfrom(512)
    ident, flags, questions = struct.unpack(">HHH", query[:6])
    end = 12
    while query[end] != 0:
        end += query[end] + 1
    question = query[12:end + 5]
    qtype = struct.unpack(">H", query[end + 1:end + 3])[0]
    answers = 1 if qtype == 1 else 0  # A only; AAAA and others get an empty answer
    header = struct.pack(">HHHHHH", ident, 0x8180, 1, answers, 0, 0)
    record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1") if answers else b""
    sock.sendto(header + question + record, client)
PY
pids+=($!)
for _ in $(seq 1 50); do grep -q listening "$work/dns.log" 2>/dev/null && break; sleep 0.1; done
if grep -q listening "$work/dns.log"; then
  answer=$(operator_in_image resolved-by-dns.aep-image-test)
  grep -q 'the image test server refuses politely' <<<"$answer" \
    || fail "no TLS conversation with a server resolved through DNS: $answer"
  ok "in the image: DNS lookup through /etc/resolv.conf (a DNS server on 127.0.0.1:53)"
else
  log "127.0.0.1:53 is taken or cannot be bound here: DNS-protocol lookup not checked ($(cat "$work/dns.log"))"
fi
rm -f "$rootfs/etc/hosts" "$rootfs/etc/resolv.conf" "$rootfs/tmp/kubeconfig"

# ---------------------------------------------------------------- 5. a real OCI runtime
# runc from Debian's packages. crun (Debian's 1.8.1) refuses this machine's hybrid cgroup v1/v2 layout; runc
# accepts it. A machine that allows neither (no namespaces, no root) is said so, and the chroot above stands.
if ! command -v runc >/dev/null && command -v apt-get >/dev/null; then
  log "installing runc (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >"$work/apt.log" 2>&1 \
    || { apt-get update -qq >>"$work/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >>"$work/apt.log" 2>&1; } \
    || log "could not install runc: $(tail -n 3 "$work/apt.log")"
fi
if command -v runc >/dev/null; then
  bundle=$work/bundle
  mkdir -p "$bundle"
  mv "$rootfs" "$bundle/rootfs"
  (cd "$bundle" && runc spec)
  # runc's default spec, with the image's user and command, a read-only root (as deploy/ runs it) and no
  # resource limits (cgroup controllers may not be delegated here; limits are not what is tested).
  python3 - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"].update(terminal=False, args=["/aep-streaming-operator", "--version"], user={"uid": 65532, "gid": 65532})
spec["root"]["readonly"] = True
spec["linux"].pop("resources", None)
json.dump(spec, open(path, "w"), indent=1)
PY
  container=aep-image-test-$$
  if output=$(cd "$bundle" && timeout 60 runc run "$container" 2>&1); then
    [[ $output == "$version_line" ]] || fail "runc run printed '$output', expected '$version_line'"
    ok "in runc ($(runc --version | head -n1)), as 65532:65532 on a read-only root: $output"
  else
    log "runc cannot run containers on this machine (not a failure of the image): $output"
  fi
  runc delete --force "$container" >/dev/null 2>&1 || true
else
  log "no runc on this machine: the OCI runtime check was skipped"
fi
log "all image checks passed ($digest)"
