#!/usr/bin/env bash
# Checks the rule pack: every rule file must load, every unit test must pass.
# Needs only promtool (Debian: apt-get install prometheus).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v promtool >/dev/null; then
	echo "check.sh: promtool not found; install the prometheus package" >&2
	exit 2
fi

rule_files=(*.yaml)
test_files=(tests/*_test.yaml)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# promtool is chatty when all is well; its output is shown only on failure.
status=ok
if ! promtool check rules --lint=all --lint-fatal "${rule_files[@]}" >"$log" 2>&1; then
	cat "$log"
	status="FAILED (check rules)"
elif ! promtool test rules "${test_files[@]}" >"$log" 2>&1; then
	cat "$log"
	status="FAILED (test rules)"
fi

records=$(cat "${rule_files[@]}" | grep -c -- '- record:' || true)
alerts=$(cat "${rule_files[@]}" | grep -c -- '- alert:' || true)
version=$(promtool --version 2>&1 | awk 'NR == 1 { print $3 }')
echo "rules: $status: ${#rule_files[@]} rule files, $records recording and $alerts alerting rules, ${#test_files[@]} test files (promtool $version)"
[[ $status == ok ]]
