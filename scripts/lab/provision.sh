#!/usr/bin/env bash
# Provision this machine for gantry's local release lab (Debian, run as root). Idempotent: a rerun on a
# provisioned machine checks and exits in seconds.
#
#   - Debian packages: podman + runc (the container engine; its Docker-compatible API serves dockerode and the
#     docker CLI), docker-registry (the registry), openssh-server (the "production host"), openssh-client (ssh-keygen signs and verifies decisions in the tests), busybox-static (the
#     lab's base image is built from its binary), git, iptables (port mapping), python3 (merges the config below).
#   - /etc/containers/containers.conf: default_ulimits and runtime = "runc" (without them containers fail with
#     "setrlimit RLIMIT_NOFILE: Operation not permitted" or crun's "cgroups in hybrid mode not supported").
#   - /etc/containers/registries.conf: the lab registry's loopback ports marked insecure (plain HTTP). Podman
#     matches registries by exact host:port, so the lab uses a fixed range: GANTRY_LAB_REGISTRY_PORT (default
#     5005) and the next GANTRY_LAB_REGISTRY_PORTS - 1 ports (default 20 in all); a lab takes the first free one.
#
# Existing config is merged, never dropped: settings gantry changes are kept as comments and the original file
# is copied once to <file>.gantry-orig. Options: --check (verify only, change nothing), --help.
set -euo pipefail

REGISTRY_PORT="${GANTRY_LAB_REGISTRY_PORT:-5005}"
REGISTRY_PORTS="${GANTRY_LAB_REGISTRY_PORTS:-20}"
CONTAINERS_CONF="${GANTRY_CONTAINERS_CONF:-/etc/containers/containers.conf}"
REGISTRIES_CONF="${GANTRY_REGISTRIES_CONF:-/etc/containers/registries.conf}"
PACKAGES=(podman runc docker-registry openssh-server openssh-client busybox-static git iptables python3)

log() { printf 'lab-provision: %s\n' "$*" >&2; }
die() { printf 'lab-provision: error: %s\n' "$*" >&2; exit 1; }

check_only=0
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown option $arg (use --check or --help)" ;;
  esac
done

started=$(date +%s)
[[ $(id -u) == 0 || $check_only == 1 ]] || die "run as root (sudo bash $0): it installs Debian packages and writes /etc/containers"
[[ "$REGISTRY_PORT" =~ ^[0-9]+$ && "$REGISTRY_PORTS" =~ ^[0-9]+$ && $REGISTRY_PORTS -ge 1 && $((REGISTRY_PORT + REGISTRY_PORTS)) -le 65536 ]] \
  || die "GANTRY_LAB_REGISTRY_PORT=$REGISTRY_PORT / GANTRY_LAB_REGISTRY_PORTS=$REGISTRY_PORTS must be a port and a count within 1-65535"

# --- Debian packages ---------------------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "packages already installed: ${PACKAGES[*]}"
elif [[ $check_only == 1 ]]; then
  die "missing Debian packages: ${missing[*]}; run: bash $0"
else
  command -v apt-get >/dev/null || die "apt-get not found: this script provisions Debian; install ${missing[*]} by hand"
  # Package scripts must not start sshd or the registry as system services (on fixed ports 22 and 5000): the
  # lab runs its own on loopback. Debian's policy-rc.d hook says no while we install.
  temp_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# written by gantry scripts/lab/provision.sh during apt-get install\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d; temp_policy=1
    trap '[[ $temp_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  log "installing ${missing[*]} (apt-get update first; about a minute cold)…"
  apt-get "${apt_opts[@]}" update -qq || die "apt-get update failed; check that Debian's package mirror is reachable"
  apt-get "${apt_opts[@]}" install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed (see above); fix apt (e.g. dpkg --configure -a) and rerun"
  if [[ $temp_policy == 1 ]]; then rm -f /usr/sbin/policy-rc.d; temp_policy=0; fi
fi
[[ -x /bin/busybox || -x /usr/bin/busybox ]] || die "busybox-static installed but no busybox binary found"

# --- container configuration (merged) -----------------------------------------------------------------------
python3 - "$CONTAINERS_CONF" "$REGISTRIES_CONF" "$REGISTRY_PORT" "$REGISTRY_PORTS" "$check_only" <<'PY'
import os, re, shutil, sys, tomllib

containers_conf, registries_conf, first_port, count, check_only = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
WANT = {"containers": {"default_ulimits": ["nofile=1024:1024", "nproc=1000:1000"]}, "engine": {"runtime": "runc"}}
MARK = "# gantry-lab"

def log(msg): print(f"lab-provision: {msg}", file=sys.stderr)
def die(msg): print(f"lab-provision: error: {msg}", file=sys.stderr); sys.exit(1)

def load(path):
    if not os.path.exists(path): return None, ""
    text = open(path, encoding="utf-8").read()
    try: return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e: die(f"{path} is not valid TOML ({e}); fix it by hand (or move it away) and rerun")

def toml_value(v):
    if isinstance(v, list): return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + v + '"'

def write(path, text, parsed_check):
    try: tomllib.loads(text)
    except tomllib.TOMLDecodeError as e: die(f"merging into {path} would make it invalid TOML ({e}); edit it by hand and rerun")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path) and not os.path.exists(path + ".gantry-orig"): shutil.copy2(path, path + ".gantry-orig")
    tmp = path + ".gantry-tmp"
    open(tmp, "w", encoding="utf-8").write(text)
    os.replace(tmp, path)

def set_key(lines, section, key, value):
    """Set key = value inside [section], commenting out an existing assignment (even a multi-line array)."""
    header = re.compile(r"^\s*\[\s*" + re.escape(section) + r"\s*\]\s*(#.*)?$")
    any_header = re.compile(r"^\s*\[")
    start = next((i for i, l in enumerate(lines) if header.match(l)), None)
    new_line = f"{key} = {toml_value(value)}  {MARK}"
    if start is None:
        lines += ["", f"[{section}]  {MARK}", new_line]
        return lines
    end = next((i for i in range(start + 1, len(lines)) if any_header.match(lines[i])), len(lines))
    assign = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    i = start + 1
    while i < end:
        if assign.match(lines[i]):
            depth = lines[i].count("[") - lines[i].count("]")
            lines[i] = f"{MARK} replaced: {lines[i]}"
            while depth > 0 and i + 1 < end:
                i += 1
                depth += lines[i].count("[") - lines[i].count("]")
                lines[i] = f"{MARK} replaced: {lines[i]}"
        i += 1
    lines.insert(start + 1, new_line)
    return lines

# containers.conf
parsed, text = load(containers_conf)
wrong = [(s, k) for s, kv in WANT.items() for k, v in kv.items() if (parsed or {}).get(s, {}).get(k) != v]
if not wrong:
    log(f"{containers_conf} already sets default_ulimits and runtime = runc")
elif check_only:
    die(f"{containers_conf} lacks {', '.join(f'[{s}] {k}' for s, k in wrong)}; run: bash scripts/lab/provision.sh")
else:
    lines = text.splitlines() if text else [f"{MARK}: settings the release lab needs (scripts/lab/provision.sh)"]
    for s, k in wrong: lines = set_key(lines, s, k, WANT[s][k])
    write(containers_conf, "\n".join(lines) + "\n", True)
    log(f"{containers_conf}: set {', '.join(f'[{s}] {k}' for s, k in wrong)}" + (" (original kept as .gantry-orig)" if text else ""))

# registries.conf
parsed, text = load(registries_conf)
parsed = parsed or {}
if "registries" in parsed:
    die(f"{registries_conf} uses the old v1 format ([registries.*]); convert it to v2 ([[registry]] tables) and rerun")
have = {r.get("location"): r for r in parsed.get("registry", []) if isinstance(r, dict)}
locations = [f"127.0.0.1:{p}" for p in range(first_port, first_port + count)]
conflicting = [l for l in locations if l in have and have[l].get("insecure") is not True]
if conflicting:
    die(f"{registries_conf} already lists {', '.join(conflicting)} without insecure = true; set insecure = true there "
        "or pick other lab ports with GANTRY_LAB_REGISTRY_PORT, and rerun")
todo = [l for l in locations if l not in have]
if not todo:
    log(f"{registries_conf} already marks the lab registry ports {first_port}-{first_port + count - 1} insecure")
elif check_only:
    die(f"{registries_conf} does not mark {', '.join(todo)} insecure; run: bash scripts/lab/provision.sh")
else:
    block = [f"\n{MARK}: the local release lab's registry (plain HTTP on loopback), scripts/lab/provision.sh"]
    for l in todo: block += ["[[registry]]", f'location = "{l}"', "insecure = true"]
    write(registries_conf, (text.rstrip("\n") + "\n" if text else "") + "\n".join(block) + "\n", True)
    log(f"{registries_conf}: marked {len(todo)} lab registry port(s) insecure ({todo[0]} … {todo[-1]})")
PY

# --- smoke check ----------------------------------------------------------------------------------------------
if [[ $(id -u) != 0 ]]; then log "configuration looks right (podman itself is checked when run as root)"; exit 0; fi
runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null) \
  || die "podman info failed; run \`podman info\` to see why (config in $CONTAINERS_CONF)"
[[ "$runtime" == runc ]] || die "podman uses runtime $runtime, not runc; check [engine] runtime in $CONTAINERS_CONF"
for bin in docker-registry /usr/sbin/sshd git; do command -v "$bin" >/dev/null || die "$bin not found after install; rerun"; done
log "ready in $(( $(date +%s) - started ))s: podman $(podman version --format '{{.Client.Version}}'), registry ports $REGISTRY_PORT-$((REGISTRY_PORT + REGISTRY_PORTS - 1))"
