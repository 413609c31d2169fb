#!/usr/bin/env bash
# Removes L2S-M from a cluster without leaving anything stuck Terminating (docs/kubernetes.md,
# "Uninstall"). Needs only kubectl (KUBECTL overrides which), with rights to delete what
# deploy/ installed.
#
#   scripts/uninstall.sh [--dry-run] [--context NAME] [--timeout SECONDS]
#
# Order matters:
#   1. delete every L2S-M custom resource cluster-wide while the operator still runs, so it
#      releases what they hold (dependents first: QuarantinePodRequests, L2Networks,
#      Overlays, NetworkEdgeDevices), and wait for them, at most --timeout seconds;
#   2. remove the operator's finalizer (l2sm.operator.io/finalizer) from whatever still has
#      it, pods included (a pod whose l2sm label was removed keeps it), with a JSON patch
#      that tests the entry first, so a concurrent change to the list is never overwritten;
#      then the NetworkAttachmentDefinitions the operator made that are left;
#   3. delete what deploy/ installed (`kubectl delete -k deploy`): no custom resource is
#      left, so the CRDs go at once instead of hanging on finalizers nobody serves;
#   4. delete the webhook configurations, if any is left;
#   5. remove the operator's stanza from CoreDNS's Corefile (kube-system/coredns, the lines
#      between its markers; the operator is gone, so nothing writes it back), with a merge
#      patch guarded by the resourceVersion read (retried from a fresh read on a conflict);
#      markers that are not one BEGIN/END pair leave the Corefile untouched, with a warning.
# Idempotent: a second run finds nothing and succeeds. --dry-run prints the changes it would
# make and changes nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
GROUP=l2sm.l2sm.k8s.local
FINALIZER=l2sm.operator.io/finalizer
KINDS=(quarantinepodrequests l2networks overlays networkedgedevices)
WEBHOOKS=(
  mutatingwebhookconfiguration/l2sm-mutating-webhook-configuration
  validatingwebhookconfiguration/l2sm-validating-webhook-configuration
)

usage() { sed -n '6p' "$0" | sed 's/^# *//' >&2; exit "${1:-2}"; }
dry_run=
context=()
timeout=120
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --context) [ $# -ge 2 ] || usage; context=(--context "$2"); shift ;;
    --timeout)
      [ $# -ge 2 ] || usage
      case "$2" in '' | *[!0-9]*) echo "--timeout wants whole seconds, not $2" >&2; exit 2 ;; esac
      timeout=$2
      shift
      ;;
    -h | --help) usage 0 ;;
    *) echo "unknown argument $1" >&2; usage ;;
  esac
  shift
done

say() { printf '== %s\n' "$*"; }
# Reads run always; changes only without --dry-run.
k() { "$KUBECTL" "${context[@]}" "$@"; }
change() {
  if [ -n "$dry_run" ]; then
    echo "would run: kubectl $*"
  else
    k "$@"
  fi
}

# The custom resource kinds this cluster still has (their CRD exists), into `present`.
find_present() {
  local kind
  present=()
  for kind in "${KINDS[@]}"; do
    if [ -n "$(k get crd "$kind.$GROUP" -o name --ignore-not-found)" ]; then
      present+=("$kind.$GROUP")
    fi
  done
}
find_present

# Names ("kind/name" lines) of the custom resources left, cluster-wide.
leftover() {
  local res
  for res in "${present[@]}"; do
    k get "$res" --all-namespaces -o name
  done
}

say "1. custom resources (the operator releases what they hold)"
for res in "${present[@]}"; do
  change delete "$res" --all --all-namespaces --ignore-not-found --wait=false
done
if [ ${#present[@]} -gt 0 ] && [ -z "$dry_run" ]; then
  deadline=$((SECONDS + timeout))
  while true; do
    left=$(leftover)
    [ -n "$left" ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "still there after ${timeout}s (their finalizers are removed next):"
      while IFS= read -r l; do echo "  $l"; done <<<"$left"
      break
    fi
    sleep 2
  done
fi

# Removes FINALIZER from every object of resource $1 that has it. A failed patch (the list
# changed meanwhile, or the object is gone) is retried from a fresh read, a bounded number
# of times.
strip_finalizers() {
  local res=$1 round listing ns name finalizers i f patch failed
  for round in 1 2 3; do
    failed=0
    listing=$(k get "$res" --all-namespaces \
      -o jsonpath='{range .items[*]}{.metadata.namespace}{"\t"}{.metadata.name}{"\t"}{.metadata.finalizers[*]}{"\n"}{end}')
    while IFS=$'\t' read -r ns name finalizers; do
      [ -n "$name" ] || continue
      i=0
      for f in $finalizers; do
        if [ "$f" = "$FINALIZER" ]; then
          patch="[{\"op\":\"test\",\"path\":\"/metadata/finalizers/$i\",\"value\":\"$FINALIZER\"},{\"op\":\"remove\",\"path\":\"/metadata/finalizers/$i\"}]"
          if [ -n "$ns" ]; then
            change patch "$res" "$name" -n "$ns" --type=json -p "$patch" || failed=1
          else
            change patch "$res" "$name" --type=json -p "$patch" || failed=1
          fi
          break
        fi
        i=$((i + 1))
      done
    done <<<"$listing"
    [ "$failed" = 1 ] || return 0
    [ "$round" = 3 ] || echo "retrying $res: a patch failed (changed or gone meanwhile)"
  done
  echo "cannot remove $FINALIZER from every $res" >&2
  return 1
}

say "2. leftover finalizers $FINALIZER"
strip_finalizers pods
for res in "${present[@]}"; do
  strip_finalizers "$res"
done

# NetworkAttachmentDefinitions go with their L2Network when the operator cleans it up; those
# of a network whose cleanup failed are left: delete the ones the operator made.
NAD=network-attachment-definitions.k8s.cni.cncf.io
if [ -n "$(k get crd "$NAD" -o name --ignore-not-found)" ]; then
  change delete "$NAD" --all-namespaces -l app.kubernetes.io/managed-by=l2sm-operator \
    --ignore-not-found --wait=false
fi

say "3. what deploy/ installed (operator, controller, switches, RBAC, namespace, CRDs)"
if ! change delete -k "$root/deploy" --ignore-not-found --wait=true --timeout="${timeout}s"; then
  # A custom resource created meanwhile holds its CRD: release it and try once more.
  find_present
  for res in "${present[@]}"; do
    strip_finalizers "$res"
  done
  change delete -k "$root/deploy" --ignore-not-found --wait=true --timeout="${timeout}s"
fi

say "4. webhook configurations"
for webhook in "${WEBHOOKS[@]}"; do
  change delete "$webhook" --ignore-not-found
done

say "5. the operator's stanza in CoreDNS's Corefile (kube-system/coredns)"
COREDNS_BEGIN='# BEGIN l2sm-operator'
COREDNS_END='# END l2sm-operator'
# Prints the Corefile in $1 without the stanza, JSON-string-escaped (without the quotes);
# exit 3: no stanza, 4: markers not one BEGIN/END pair.
corefile_without_stanza() {
  awk -v b="$COREDNS_BEGIN" -v e="$COREDNS_END" '
    function trim(s) { sub(/^[ \t\r]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
    { line[NR] = $0; t = trim($0); if (t == b) { nb++; bi = NR } if (t == e) { ne++; ei = NR } }
    END {
      if (nb == 0 && ne == 0) exit 3
      if (nb != 1 || ne != 1 || bi > ei) exit 4
      for (i = 1; i <= NR; i++) if (i < bi || i > ei) print line[i]
    }' "$1" >"$1.out" || return $?
  # JSON string: backslashes, quotes, tabs, carriage returns, then newlines as \n.
  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' -e 's/\r/\\r/g' "$1.out" \
    | awk '{ printf "%s\\n", $0 }'
}
# Removes the stanza, using the temporary file $1.
strip_coredns_with() {
  local tmp=$1 round rv body code
  for round in 1 2 3; do
    rv=$(k get configmap coredns -n kube-system --ignore-not-found -o 'jsonpath={.metadata.resourceVersion}')
    if [ -z "$rv" ]; then
      echo "no ConfigMap kube-system/coredns"
      return 0
    fi
    k get configmap coredns -n kube-system -o 'jsonpath={.data.Corefile}' >"$tmp"
    code=0
    body=$(corefile_without_stanza "$tmp") || code=$?
    case "$code" in
      0) ;;
      3) echo "no l2sm-operator stanza in the Corefile"; return 0 ;;
      *)
        echo "warning: the Corefile's l2sm-operator markers are not one BEGIN/END pair: left untouched" >&2
        return 0
        ;;
    esac
    # The version read is a precondition: a Corefile written since is not overwritten
    # (the API server answers 409 Conflict) and is read again.
    if change patch configmap coredns -n kube-system --type=merge \
      -p "{\"metadata\":{\"resourceVersion\":\"$rv\"},\"data\":{\"Corefile\":\"$body\"}}"; then
      return 0
    fi
    [ "$round" = 3 ] || echo "retrying: the Corefile changed meanwhile"
  done
  echo "cannot remove the l2sm-operator stanza from kube-system/coredns" >&2
  return 1
}
coredns_tmp=$(mktemp)
coredns_status=0
strip_coredns_with "$coredns_tmp" || coredns_status=$?
rm -f "$coredns_tmp" "$coredns_tmp.out"
[ "$coredns_status" = 0 ] || exit "$coredns_status"

if [ -n "$dry_run" ]; then
  say "dry run: nothing was changed"
else
  say "L2S-M is uninstalled"
fi
