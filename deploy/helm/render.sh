#!/usr/bin/env bash
# Lints the Helm chart and renders deploy/kubernetes/signet.yaml from it
# (`make manifests`), or with --check fails when that file is not what the
# chart renders (CI). Helm is run from the module proxy, never from go.mod;
# set HELM to use a helm binary instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
read -r -a helm <<<"${HELM:-go run helm.sh/helm/v3/cmd/helm@v3.22.0}"
chart=deploy/helm/signet
out=deploy/kubernetes/signet.yaml

"${helm[@]}" lint --strict "$chart" --set trustDomain=example.org
"${helm[@]}" lint --strict "$chart" --set trustDomain=example.org \
  --set server.store.driver=postgres --set server.replicas=2 --set agent.workloadAttestors.k8s.kubeletAuthz=proxy \
  --set server.keyManager.type=sealed

rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
{
  echo "# Generated from deploy/helm/signet by \`make manifests\` (deploy/helm/render.sh): do not edit."
  echo "# helm template signet deploy/helm/signet --namespace signet --set trustDomain=example.org"
  "${helm[@]}" template signet "$chart" --namespace signet --set trustDomain=example.org
} >"$rendered"

if [ "${1:-}" = "--check" ]; then
  if ! diff -u "$out" "$rendered"; then
    echo "$out is stale: run make manifests and commit the result" >&2
    exit 1
  fi
  echo "$out is current"
else
  cp "$rendered" "$out"
  echo "wrote $out"
fi
