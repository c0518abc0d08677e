#!/usr/bin/env bash
# make demo: the main job against the local sandbox, on a fresh machine.
#   1. start the sandbox: a Prow cluster (with the real External Secrets CRDs) and a fake
#      GCP project; the build cluster is created through the fake GKE API
#   2. ansible-playbook playbooks/onboard.yml -e @examples/sandbox-vars.yml
#   3. the same again: it must report changed=0
#   4. playbooks/verify.yml
#   5. real Prow (prow-controller-manager with plank, started with the sandbox) loads the
#      cluster from the delivered Secret and schedules a decorated ProwJob into it
#   then where the outputs are
# The sandbox keeps running afterwards, for a look around; `make sandbox-down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$PWD/.venv/bin
export SANDBOX_DIR=${SANDBOX_DIR:-$PWD/.sandbox}
export ANSIBLE_CONFIG=$PWD/ansible.cfg
export PATH=$BIN:$PATH

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting the sandbox in $SANDBOX_DIR"
prow-sandbox up
# shellcheck disable=SC1091
source "$SANDBOX_DIR/env"
# The External Secrets CRDs, pinned, from the Go module proxy (make setup fetched them).
crds=$(prow-sandbox assets eso-crds)
crd_args=()
while read -r crd; do crd_args+=(--filename "$crd"); done <<<"$crds"
kubectl --kubeconfig "$PROW_KUBECONFIG" apply --server-side "${crd_args[@]}" >/dev/null

step "Starting Prow (prow-controller-manager with plank) against the Prow cluster"
prow-sandbox prow up

step "First onboarding run"
ansible-playbook playbooks/onboard.yml -e @examples/sandbox-vars.yml

step "Second run: must change nothing"
ansible-playbook playbooks/onboard.yml -e @examples/sandbox-vars.yml | tee "$SANDBOX_DIR/demo-rerun.log"
# One recap line per host (each build cluster, and localhost): every one must say changed=0.
recap=$(sed -n '/^PLAY RECAP/,$p' "$SANDBOX_DIR/demo-rerun.log" | grep -E '^[^ ]+ +: ok=')
if [ -z "$recap" ] || grep -Evq 'changed=0 .*failed=0' <<<"$recap"; then
  echo "demo: the second run changed something" >&2
  exit 1
fi

step "Verifying: Prow's credential and the jobs' Workload Identity chain"
ansible-playbook playbooks/verify.yml -e @examples/sandbox-vars.yml

step "Outputs"
cat <<MSG
Outputs:
  $SANDBOX_DIR/out/composite.kubeconfig         composite kubeconfig Prow loads (mode 0600)
  $SANDBOX_DIR/out/build-sandbox/               files a Prow admin commits for the cluster (decoration
                                                entry, rotation periodic and CronJob)
  $SANDBOX_DIR/out/prow/                        the kustomize Component for Prow's deployments (made once
                                                for every cluster) and the ExternalSecret of every cluster
  $SANDBOX_DIR/gcp/requests.jsonl               every call the fake GCP received
  $SANDBOX_DIR/clusters/*/audit.log             every write each kube-apiserver received
  $SANDBOX_DIR/prow/                            Prow's log, pod status, its mounted volumes
Try: kubectl --kubeconfig $SANDBOX_DIR/out/composite.kubeconfig --context build-sandbox auth can-i create pods -n test-pods
MSG

step "Prow schedules a decorated ProwJob into the onboarded cluster"
prow-sandbox prow wait build-sandbox
prow-sandbox prow job build-sandbox --wait
printf 'build cluster status file (gs://prow-sandbox-results/build-cluster-status.json, plank writes it each minute): '
prow-sandbox prow cluster-status --wait build-sandbox
echo "Stop the sandbox with: make sandbox-down"
