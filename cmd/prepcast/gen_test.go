package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// prepcast gen writes the replayed night into a directory, the first cut
// first, then --cut N; prepcast cuts each state of the tree, and each
// cut's JSON directory is the one its main.json names. After the final cut
// the next call writes nothing.
func TestGenAdvancesATreeThatCutsTake(t *testing.T) {
	c := newCLI(t, 0, false)
	tree := filepath.Join(t.TempDir(), "results")
	mainCut := func() (string, int, string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(tree, "json", "main.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Cut struct {
				ID    string `json:"id"`
				Index int    `json:"index"`
			} `json:"cut"`
			JSONDir string `json:"json_dir"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m.Cut.ID, m.Cut.Index, m.JSONDir
	}
	var ids []string
	for i, args := range [][]string{{"--next"}, {"--cut", "3"}} {
		code, out := c.run(append([]string{"gen", "--dir", tree, "--cuts", "3", "--scale", "0.01"}, args...)...)
		if code != 0 {
			t.Fatalf("gen %v: exit %d\n%s", args, code, out)
		}
		id, index, dir := mainCut()
		want := []int{0, 2}[i]
		if index != want || !strings.Contains(out, "of 3 ("+id+",") || dir != "json/"+id {
			t.Fatalf("gen %v: main.json cut %s index %d dir %s, want index %d\n%s", args, id, index, dir, want, out)
		}
		if _, err := os.Stat(filepath.Join(tree, dir)); err != nil {
			t.Fatalf("the cut's JSON directory: %v", err)
		}
		code, out = c.run("cut", "--config", c.cfg, "--source", tree)
		if code != 0 || !strings.Contains(out, "files") {
			t.Fatalf("cut of gen's tree: exit %d\n%s", code, out)
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] {
		t.Fatalf("gen cut ids repeat: %v", ids)
	}
	// The next call after the final cut writes nothing.
	if code, out := c.run("gen", "--dir", tree, "--cuts", "3", "--scale", "0.01"); code != 0 || !strings.Contains(out, "already holds the final cut (3 of 3)") {
		t.Fatalf("gen past the final cut: exit %d\n%s", code, out)
	}
	if code, out := c.run("gen", "--dir", tree, "--cuts", "3", "--cut", "4"); code != exitUsage || !strings.Contains(out, "want 1 to 3") {
		t.Fatalf("gen --cut 6 of 5: exit %d\n%s", code, out)
	}
	if code, out := c.run("gen", "--dir", tree, "--next", "--cut", "2"); code != exitUsage || !strings.Contains(out, "not both") {
		t.Fatalf("gen --next --cut 2: exit %d\n%s", code, out)
	}
	if code, out := c.run("gen"); code != exitUsage || !strings.Contains(out, "--dir") {
		t.Fatalf("gen without --dir: exit %d\n%s", code, out)
	}
}
