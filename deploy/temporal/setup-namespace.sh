#!/bin/sh
# One-shot (compose service temporal-setup): once the server answers, make sure gantry's namespace exists and
# register gantry's search attributes on it (all Keyword). Idempotent: what exists is left alone.
# Outside compose (scripts/topology.sh), GANTRY_TEMPORAL_CLI names the Temporal CLI (default temporal on PATH,
# as in the admin-tools image).
set -eu
ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${GANTRY_NAMESPACE_RETENTION:-30d}"
ATTRIBUTES="${GANTRY_SEARCH_ATTRIBUTES:-GantryService GantryVersion GantryStage GantryOutcome GantryEnvironment}"

CLI="${GANTRY_TEMPORAL_CLI:-temporal}"

t() { "$CLI" "$@" --address "$ADDRESS"; }

tries=0
until t operator cluster health >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "temporal-setup: the Temporal server at $ADDRESS did not become healthy in 2 minutes; see the server's log (under compose: \`docker compose logs temporal\`)" >&2
    exit 1
  fi
  sleep 2
done

if t operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "temporal-setup: namespace $NAMESPACE exists"
else
  t operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
  echo "temporal-setup: created namespace $NAMESPACE (retention $RETENTION)"
fi

# A namespace just created takes a few seconds to reach every service: retry until the attributes are listed.
for name in $ATTRIBUTES; do
  tries=0
  until t operator search-attribute list --namespace "$NAMESPACE" 2>/dev/null | grep -qw "$name"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      echo "temporal-setup: could not register search attribute $name on namespace $NAMESPACE" >&2
      exit 1
    fi
    t operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type Keyword >/dev/null 2>&1 || sleep 2
  done
  echo "temporal-setup: search attribute $name (Keyword) registered"
done
