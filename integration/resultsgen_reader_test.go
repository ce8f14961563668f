package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/resultsgen"
)

// genMain is the part of resultsgen's json/main.json a site client reads:
// the cut and the files it names with their size and SHA-256.
type genMain struct {
	Cut struct {
		ID    string `json:"id"`
		Index int    `json:"index"`
	} `json:"cut"`
	JSONDir string `json:"json_dir"`
	Files   []struct {
		Path   string `json:"path"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"files"`
}

// checkGenMain reads json/main.json under web and every file it lists, and
// returns the cut it names, or an error for a main.json that is not whole
// JSON, lists a path that is not unique to its cut, or names a file that is
// missing or holds other bytes.
func checkGenMain(web string) (genMain, error) {
	var m genMain
	data, err := os.ReadFile(filepath.Join(web, "json", "main.json"))
	if err != nil {
		return m, fmt.Errorf("read json/main.json: %w", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("main.json is not whole JSON: %w", err)
	}
	if m.Cut.ID == "" || len(m.Files) == 0 {
		return m, fmt.Errorf("main.json names no cut or no file: %.200s", data)
	}
	for _, f := range m.Files {
		if !strings.HasPrefix(f.Path, m.JSONDir+"/") && f.Path != "datos/"+m.Cut.ID+"_PREP_PUE.zip" {
			return m, fmt.Errorf("main.json of %s lists %s, a path not unique to the cut", m.Cut.ID, f.Path)
		}
		b, err := os.ReadFile(filepath.Join(web, filepath.FromSlash(f.Path)))
		if err != nil {
			return m, fmt.Errorf("main.json of %s names a missing file: %w", m.Cut.ID, err)
		}
		s := sha256.Sum256(b)
		if int64(len(b)) != f.Size || hex.EncodeToString(s[:]) != f.SHA256 {
			return m, fmt.Errorf("main.json of %s names %s (%d bytes, sha %.12s) but the target holds %d bytes, sha %.12s",
				m.Cut.ID, f.Path, f.Size, f.SHA256, len(b), hex.EncodeToString(s[:]))
		}
	}
	return m, nil
}

// While the replayed PREP night is cut and pushed to a real sshd target, a
// reader polls json/main.json on the target's webroot and every file it
// names: it never sees a missing file or other bytes, and the cut it sees
// never goes back.
func TestResultsgenReaderNeverSeesMissingOrWrongFile(t *testing.T) {
	e := newEnv(t, 1)
	eng := e.engine()
	// 25 cuts spread over the whole night, one real hour apart: cuts 6-13
	// show 02:00-09:00, when most actas are verified, so every cut brings
	// new acta images besides its JSON directory, CSVs and zip.
	night, err := resultsgen.New(resultsgen.Options{Seed: 2024, Scale: 0.01, MinImage: 2 << 10, MaxImage: 6 << 10,
		Cuts: 25, Replay: 24 * time.Hour, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	const first, last = 6, 13
	cutAndPush := func(k int) {
		t.Helper()
		st, err := night.WriteCut(e.src, k)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.store.Cut(context.Background(), packager.CutOptions{Source: e.src, Key: e.priv, Pointers: []string{"json/main.json"}, Keep: 10})
		if err != nil {
			t.Fatalf("cut %s: %v", night.CutID(k), err)
		}
		if res.NoChange {
			t.Fatalf("cut %s: the tree did not change", night.CutID(k))
		}
		requireOK(t, eng.Push(context.Background(), e.specs()), res.Info.Seq)
		t.Logf("cut %s: %d files written, %d removed; delta %d files, %d bytes", night.CutID(k), st.Written, st.Removed, res.Info.DeltaFiles, res.Info.DeltaBytes)
	}
	cutAndPush(first)
	web := e.servers[0].WebRoot()
	if _, err := checkGenMain(web); err != nil {
		t.Fatalf("after the first push: %v", err)
	}
	imagesBefore := countImages(t, web)

	lastIndex := -1
	r := startReader(func() (string, error) {
		m, err := checkGenMain(web)
		if err != nil {
			return "", err
		}
		if m.Cut.Index < lastIndex {
			return "", fmt.Errorf("main.json went back from cut %d to %s (%d)", lastIndex, m.Cut.ID, m.Cut.Index)
		}
		lastIndex = m.Cut.Index
		return m.Cut.ID, nil
	})
	for k := first + 1; k <= last; k++ {
		cutAndPush(k)
	}
	r.finish(t, 3)
	m, err := checkGenMain(web)
	if err != nil {
		t.Fatal(err)
	}
	if m.Cut.ID != night.CutID(last) {
		t.Errorf("target serves cut %s, want %s", m.Cut.ID, night.CutID(last))
	}
	if images := countImages(t, web); images <= imagesBefore {
		t.Errorf("the target holds %d acta images after cut %s, %d after cut %s; the night replayed no actas",
			images, night.CutID(last), imagesBefore, night.CutID(first))
	}
}

// countImages returns how many acta images web holds.
func countImages(t *testing.T, web string) int {
	t.Helper()
	n := 0
	for p := range walkWebroot(t, web) {
		if strings.HasPrefix(p, "actas/") && strings.HasSuffix(p, ".jpg") {
			n++
		}
	}
	return n
}
