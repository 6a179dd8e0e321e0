#!/usr/bin/env bash
# The baseline gantry is measured against: the lab's runbook for one release as a plain shell script, with none
# of gantry's durability, approvals or records. `npm run bench -- script` times it against
# `gantry start … --approve-as alice --wait` on a fresh lab each time (bench/script.ts).
#
#   GANTRY_LAB_WEBHOOK_URL=… bash bench/release-script.sh <lab-dir> <version>
#
# The lab directory is a running lab's (src/lab: lab.json, gantry.yaml, its keys). Steps, as gantry's runbook:
#   preflight  version is semver, CHANGELOG.md has its section, the head is clean, the tag does not exist yet
#   tag        annotated tag, pushed, verified on the remote at the release commit
#   build      image built on the lab's engine, pushed to the lab registry, digest read from the registry
#   staging    container replaced (by digest), smoke-checked: /health 200 and /version = version
#   production one ssh session to the lab's production host (host key pinned): pull, replace, start
#   health     production /health 200 and /version = version
#   announce   one webhook message and one hash-chained line in the audit log
set -euo pipefail

lab=${1:?usage: release-script.sh <lab-dir> <version>}
version=${2:?usage: release-script.sh <lab-dir> <version>}
: "${GANTRY_LAB_WEBHOOK_URL:?the lab webhook URL (GANTRY_LAB_WEBHOOK_URL, as the worker gets it)}"
lab=$(cd "$lab" && pwd)
step() { printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "$1" >&2; }
die() { echo "release-script: $*" >&2; exit 1; }

# The lab's addresses, from its state file (python3 is part of the lab's provisioning).
eval "$(python3 - "$lab/lab.json" <<'PY'
import json, shlex, sys
s = json.load(open(sys.argv[1]))
for k in ('id', 'engineSocket', 'registryPort', 'sshPort', 'stagingPort', 'productionPort'):
    print(f"{k}={shlex.quote(str(s[k]))}")
PY
)"
registry=127.0.0.1:$registryPort
image=$registry/hello
tag=v$version
export DOCKER_HOST=unix://$engineSocket DOCKER_BUILDKIT=0
staging=hello-staging-$id
production=hello-production-$id
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# check URL VERSION: /health answers 200 and /version answers {"version": VERSION}, within 30 s.
check() {
  local url=$1 deadline=$((SECONDS + 30))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "$url/health") == 200 ]] &&
        curl -s "$url/version" | grep -q "\"version\": *\"$version\""; do
    (( SECONDS < deadline )) || die "$url did not answer /health 200 and /version $version within 30 s"
    sleep 0.1
  done
}

step preflight
[[ $version =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] || die "$version is not semver"
git clone --quiet --branch main "$lab/git/hello.git" "$work/repo"
cd "$work/repo"
commit=$(git rev-parse HEAD)
grep -q "^## \[$version\]" CHANGELOG.md || die "CHANGELOG.md has no section for $version"
[[ -z $(git status --porcelain) ]] || die "the head is not clean"
[[ -z $(git ls-remote --tags origin "refs/tags/$tag") ]] || die "tag $tag exists already"

step tag
git -c user.name=release-script -c user.email=release@lab.invalid tag -a "$tag" -m "hello $version" "$commit"
git push --quiet origin "refs/tags/$tag"
[[ $(git ls-remote origin "refs/tags/$tag^{}" | cut -f1) == "$commit" ]] || die "the pushed tag is not at $commit"

step build
quiet() { "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; die "failed: $*"; }; }
quiet docker build --quiet -t "$image:$tag" --build-arg "GREETING=hello from the gantry lab" .
quiet docker push --quiet "$image:$tag"
digest=$(curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
  "http://$registry/v2/hello/manifests/$tag" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
[[ $digest == sha256:* ]] || die "the registry gave no digest for $image:$tag"
ref=$image@$digest

step staging
docker rm -f "$staging" >/dev/null 2>&1 || true
quiet docker run -d --quiet --name "$staging" -p "127.0.0.1:$stagingPort:80" --env-file "$lab/hello.env" --restart unless-stopped "$ref"
check "http://127.0.0.1:$stagingPort"

step production
echo "[127.0.0.1]:$sshPort $(cat "$lab/ssh/ssh_host_ed25519_key.pub")" > "$work/known_hosts"
ssh -q -p "$sshPort" -i "$lab/ssh/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/known_hosts" \
  "$(id -un)@127.0.0.1" "export DOCKER_HOST=$DOCKER_HOST; docker pull -q $ref >/dev/null && { docker rm -f $production >/dev/null 2>&1 || true; } &&
    docker run -d --name $production -p 127.0.0.1:$productionPort:80 --env-file $lab/hello.env --restart unless-stopped $ref >/dev/null"

step health
check "http://127.0.0.1:$productionPort"

step announce
curl -sf -X POST -H 'Content-Type: application/json' --data "{\"text\": \"hello $version released: $ref\"}" "$GANTRY_LAB_WEBHOOK_URL" >/dev/null
audit=$lab/audit.jsonl
prev=$( [[ -s $audit ]] && tail -n 1 "$audit" | tr -d '\n' | sha256sum | cut -d' ' -f1 || echo none)
printf '{"at":"%s","service":"hello","version":"%s","action":"released","digest":"%s","prev":"%s"}\n' \
  "$(date -u +%FT%T.%3NZ)" "$version" "$digest" "$prev" >> "$audit"
step done
