package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/isobar-tsdb/isobar/"

// TestImportsPointDown checks the layering of shared/ARCHITECTURE.md on
// every package's own (non-test) imports: cmd → ingest | tsdb | querier →
// pkg; querier reads the bucket only through tsdb/bucket and
// tsdb/bucketindex; the query-frontend never imports the querier's engine
// or queryable; bench builds on pkg only.
func TestImportsPointDown(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", filepath.Join("..", "..")+"/...").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	allowed := func(from, to string) bool {
		layer := func(p string) string { return strings.SplitN(p, "/", 2)[0] }
		switch layer(from) {
		case "cmd":
			return true
		case "pkg":
			return layer(to) == "pkg"
		case "ingest":
			return layer(to) == "pkg" || layer(to) == "ingest"
		case "tsdb":
			return layer(to) == "pkg" || layer(to) == "tsdb"
		case "querier":
			if strings.HasPrefix(from, "querier/frontend") && (strings.HasPrefix(to, "querier/engine") || strings.HasPrefix(to, "querier/queryable")) {
				return false
			}
			return layer(to) == "pkg" || layer(to) == "querier" || to == "tsdb/bucket" || to == "tsdb/bucketindex"
		case "bench":
			return layer(to) == "pkg" || layer(to) == "bench"
		}
		return false
	}
	var broken []string
	for _, line := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
		fields := strings.Fields(line)
		from, ok := strings.CutPrefix(fields[0], module)
		if !ok {
			continue
		}
		for _, imp := range fields[1:] {
			if to, ok := strings.CutPrefix(imp, module); ok && !allowed(from, to) {
				broken = append(broken, from+" -> "+to)
			}
		}
	}
	require.Empty(t, broken, "imports against the layers")
}
