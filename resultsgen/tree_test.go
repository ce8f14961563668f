package resultsgen

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/internal/safepath"
)

// smallNight is a fast night for tree tests: 2% of the actas, 1-4 KB images,
// 9 cuts over the whole real night.
func smallNight(t testing.TB, seed uint64) *Night {
	t.Helper()
	n, err := New(Options{Seed: seed, Scale: 0.02, MinImage: 1 << 10, MaxImage: 4 << 10, Cuts: 9, Replay: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readMain(t testing.TB, root string) mainDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "json", "main.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m mainDoc
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("json/main.json: %v", err)
	}
	return m
}

// checkTree verifies that root holds exactly cut k of n: main.json names the
// cut and lists with a hash only paths unique to it (the cut's JSON directory,
// every file of it, and its zip), each present with that size and hash; the
// stable-path CSVs are named in downloads, without a hash; one image per
// registered acta with an image; and nothing else in the generator's
// directories.
func checkTree(t *testing.T, n *Night, root string, k int) map[string]fileState {
	t.Helper()
	snap := snapshot(t, root)
	m := readMain(t, root)
	id := n.CutID(k)
	if m.Cut.ID != id || m.Cut.Index != k {
		t.Errorf("main.json names cut %s (%d), want %s (%d)", m.Cut.ID, m.Cut.Index, id, k)
	}
	dir, zip := "json/"+id, "datos/"+id+"_PREP_PUE.zip"
	if m.JSONDir != dir {
		t.Errorf("main.json json_dir %q, want %q", m.JSONDir, dir)
	}
	listed := map[string]bool{"json/main.json": true}
	for _, f := range m.Files {
		if !strings.HasPrefix(f.Path, dir+"/") && f.Path != zip {
			t.Errorf("main.json lists %s with a hash; only paths unique to cut %s may be", f.Path, id)
		}
		if listed[f.Path] {
			t.Errorf("main.json lists %s twice", f.Path)
		}
		listed[f.Path] = true
		s, ok := snap[f.Path]
		if !ok {
			t.Errorf("main.json lists %s, which is missing", f.Path)
			continue
		}
		if s.size != f.Size || s.sha != f.SHA256 {
			t.Errorf("%s: size %d sha %s, main.json says %d %s", f.Path, s.size, s.sha, f.Size, f.SHA256)
		}
	}
	if !listed[zip] {
		t.Errorf("main.json does not list the cut's zip")
	}
	for p := range snap {
		if strings.HasPrefix(p, dir+"/") && !listed[p] {
			t.Errorf("%s is in the cut's JSON directory but not in main.json", p)
		}
	}
	var wantDownloads []string
	for _, code := range n.opts.Elections {
		wantDownloads = append(wantDownloads, "datos/PUE_"+code+"_2024.csv", "datos/PUE_"+code+"_Candidaturas_2024.csv")
	}
	slices.Sort(wantDownloads)
	if !slices.Equal(m.Downloads, wantDownloads) {
		t.Errorf("main.json downloads %q, want %q", m.Downloads, wantDownloads)
	}
	for _, p := range m.Downloads {
		if _, ok := snap[p]; !ok {
			t.Errorf("main.json names download %s, which is missing", p)
		}
		listed[p] = true
	}
	hexRe := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, code := range n.opts.Elections {
		csvFile := parseCSV(t, mustRead(t, filepath.Join(root, "datos", "PUE_"+code+"_2024.csv")))
		want := 0
		for _, r := range csvFile.rows {
			if hexRe.MatchString(csvFile.get(r, "CODIGO_INTEGRIDAD")) {
				want++
			}
		}
		got := 0
		for p := range snap {
			if strings.HasPrefix(p, "actas/"+code+"/") && strings.HasSuffix(p, ".jpg") {
				got++
				listed[p] = true
			}
		}
		if got != want {
			t.Errorf("%s: %d images, want one per registered acta with an image: %d", code, got, want)
		}
	}
	for p := range snap {
		if !listed[p] && !strings.HasPrefix(p, "foreign/") && p != "LEEME.txt" {
			t.Errorf("unexpected file %s in cut %d", p, k)
		}
	}
	return snap
}

// countPrefix returns how many paths of snap start with prefix.
func countPrefix(snap map[string]fileState, prefix string) int {
	c := 0
	for p := range snap {
		if strings.HasPrefix(p, prefix) {
			c++
		}
	}
	return c
}

// exists reports whether the slash path rel exists under root.
func exists(t *testing.T, root, rel string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteCutIsIncremental(t *testing.T) {
	n := smallNight(t, 7)
	root := t.TempDir()
	// Files the generator does not own survive; stray files in its own
	// directories do not.
	if err := os.MkdirAll(filepath.Join(root, "foreign"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"LEEME.txt", "foreign/keep.jpg"} {
		if err := os.WriteFile(filepath.Join(root, p), []byte("not ours"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "actas", "GUB"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "actas", "GUB", ".stale.jpg.tmp123"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	st, err := n.WriteCut(root, 4)
	if err != nil {
		t.Fatal(err)
	}
	if st.Removed != 1 || st.Written != st.Files || st.WrittenBytes != st.Bytes {
		t.Errorf("first write: %+v, want every file written and the stale temp file removed", st)
	}
	before := checkTree(t, n, root, 4)
	mainBefore := mustRead(t, filepath.Join(root, "json", "main.json"))

	// Rewriting the same cut changes nothing.
	st, err = n.WriteCut(root, 4)
	if err != nil {
		t.Fatal(err)
	}
	if st.Written != 0 || st.Removed != 0 {
		t.Errorf("rewriting cut 4: %+v, want nothing written or removed", st)
	}
	time.Sleep(10 * time.Millisecond) // a rewrite would show in the mtime

	// main.json is written before the previous cut's zip and JSON directory
	// are removed: when it switches, both cuts' files are in the tree.
	id4, id5 := n.CutID(4), n.CutID(5)
	switched := false
	n.pointerWritten = func() {
		switched = true
		if m := readMain(t, root); m.Cut.ID != id5 {
			t.Errorf("after the pointer is written main.json names %s, want %s", m.Cut.ID, id5)
		}
		for _, rel := range []string{"json/" + id4 + "/GUB/totales.json", "datos/" + id4 + "_PREP_PUE.zip", "json/" + id5 + "/GUB/totales.json"} {
			if !exists(t, root, rel) {
				t.Errorf("%s is missing when main.json switches", rel)
			}
		}
	}
	st, err = n.WriteCut(root, 5)
	n.pointerWritten = nil
	if err != nil {
		t.Fatal(err)
	}
	if !switched {
		t.Error("WriteCut did not reach the pointer switch")
	}
	after := checkTree(t, n, root, 5)
	t.Logf("cut 4 -> 5: %+v", st)
	newImages := 0
	for p := range after {
		if strings.HasPrefix(p, "actas/") {
			if _, ok := before[p]; !ok {
				newImages++
			}
		}
	}
	for p, b := range before {
		if strings.HasPrefix(p, "actas/") || strings.HasPrefix(p, "foreign/") || p == "LEEME.txt" {
			a, ok := after[p]
			if !ok {
				t.Errorf("%s vanished", p)
			} else if a != b {
				t.Errorf("%s changed: %+v -> %+v", p, b, a)
			}
		}
	}
	if newImages == 0 {
		t.Error("cut 5 added no image")
	}
	if exists(t, root, "datos/"+id4+"_PREP_PUE.zip") {
		t.Error("cut 4's zip is still there")
	}
	if exists(t, root, "json/"+id4) {
		t.Error("cut 4's JSON directory is still there")
	}
	if bytes.Equal(mainBefore, mustRead(t, filepath.Join(root, "json", "main.json"))) {
		t.Error("json/main.json did not change")
	}
	// Written: the new images, the CSVs, the zip, the new JSON directory and
	// main.json; never an unchanged candidaturas file. Removed: the old zip
	// and the old JSON directory.
	oldJSON, newJSON := countPrefix(before, "json/"+id4+"/"), countPrefix(after, "json/"+id5+"/")
	if newJSON == 0 || st.Written < newImages+3+1+newJSON+1 || st.Removed != 1+oldJSON {
		t.Errorf("cut 4 -> 5: %+v with %d new images, %d new and %d old JSON files", st, newImages, newJSON, oldJSON)
	}
	for p, a := range after {
		if strings.Contains(p, "Candidaturas") && a.mtime != before[p].mtime {
			t.Errorf("%s was rewritten although unchanged", p)
		}
	}

	// The tree reached through cut 4 is the tree cut 5 writes from scratch.
	fresh := t.TempDir()
	if _, err := n.WriteCut(fresh, 5); err != nil {
		t.Fatal(err)
	}
	scratch := snapshot(t, fresh)
	for p, a := range after {
		if strings.HasPrefix(p, "foreign/") || p == "LEEME.txt" {
			continue
		}
		if s, ok := scratch[p]; !ok || s.sha != a.sha {
			t.Errorf("%s differs between the incremental and the fresh cut 5", p)
		}
		delete(scratch, p)
	}
	for p := range scratch {
		t.Errorf("%s is only in the fresh cut 5", p)
	}

	// Going back to an earlier cut removes the images of later actas and
	// cut 5's JSON.
	if _, err := n.WriteCut(root, 1); err != nil {
		t.Fatal(err)
	}
	checkTree(t, n, root, 1)
	if exists(t, root, "json/"+id5) {
		t.Error("cut 5's JSON directory is still there after going back to cut 1")
	}
}

func TestWriteCutBeforeAnyActa(t *testing.T) {
	n := smallNight(t, 1)
	root := t.TempDir()
	st, err := n.WriteCut(root, 0)
	if err != nil {
		t.Fatal(err)
	}
	snap := checkTree(t, n, root, 0)
	for p := range snap {
		if strings.HasPrefix(p, "actas/") {
			t.Errorf("image %s at the opening", p)
		}
	}
	gub := parseCSV(t, mustRead(t, filepath.Join(root, "datos", "PUE_GUB_2024.csv")))
	if s := gub.summary(); s["ACTAS_CAPTURADAS"] != "0" || s["PORCENTAJE_PARTICIPACION_CIUDADANA"] != "0.0000" {
		t.Errorf("opening summary %q, want nothing captured", gub.lines[4])
	}
	if st.Files != len(snap) {
		t.Errorf("Stats.Files = %d, tree has %d", st.Files, len(snap))
	}
}

func TestWriteCutRejectsBadCut(t *testing.T) {
	n := smallNight(t, 1)
	for _, k := range []int{-1, n.Cuts()} {
		if _, err := n.WriteCut(t.TempDir(), k); err == nil {
			t.Errorf("WriteCut(%d) succeeded, want an out-of-range error", k)
		}
	}
}

func TestImages(t *testing.T) {
	tests := []struct {
		name     string
		lo, hi   int
		seed     uint64
		rel      string
		sameAs   int // index of a case that must give identical bytes, -1 for none
		differTo int // index of a case that must give different bytes, -1 for none
	}{
		{"base", 1000, 4000, 1, "actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg", -1, -1},
		{"same seed and path", 1000, 4000, 1, "actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg", 0, -1},
		{"other seed", 1000, 4000, 2, "actas/GUB/Gubernatura_024_TEHUACAN_1972_B01.jpg", -1, 0},
		{"other acta", 1000, 4000, 1, "actas/GUB/Gubernatura_024_TEHUACAN_1972_C01.jpg", -1, 0},
		{"fixed size", 3000, 3000, 1, "actas/AYUN/x.jpg", -1, -1},
		{"minimum", minImageSize, minImageSize, 9, "actas/AYUN/y.jpg", -1, -1},
	}
	out := make([][]byte, len(tests))
	for i, tt := range tests {
		seed := imageSeed(tt.seed, tt.rel)
		img := imageFile{path: tt.rel, size: imageSize(seed, tt.lo, tt.hi), seed: seed}
		var b bytes.Buffer
		if err := writeImage(&b, img, make([]byte, 333)); err != nil {
			t.Fatal(err)
		}
		out[i] = b.Bytes()
		t.Run(tt.name, func(t *testing.T) {
			got := out[i]
			if len(got) < tt.lo || len(got) > tt.hi || int64(len(got)) != img.size {
				t.Errorf("size %d, want %d in [%d, %d]", len(got), img.size, tt.lo, tt.hi)
			}
			if !bytes.HasPrefix(got, []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00")) || !bytes.HasSuffix(got, []byte{0xff, 0xd9}) {
				t.Errorf("not a JPEG/JFIF header and end marker: % x ... % x", got[:12], got[len(got)-2:])
			}
			if tt.sameAs >= 0 && !bytes.Equal(got, out[tt.sameAs]) {
				t.Errorf("bytes differ from case %q", tests[tt.sameAs].name)
			}
			if tt.differTo >= 0 && bytes.Equal(got[20:], out[tt.differTo][20:min(len(got), len(out[tt.differTo]))]) {
				t.Errorf("bytes equal to case %q", tests[tt.differTo].name)
			}
		})
	}
	// Incompressible: deflate cannot shrink an image.
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	w.Write(out[0])
	w.Close()
	if z.Len() < len(out[0]) {
		t.Errorf("a %d-byte image deflates to %d bytes; images must be incompressible", len(out[0]), z.Len())
	}
	// Sizes spread over the whole range.
	lo, hi := int64(1<<62), int64(0)
	for i := range 2000 {
		s := imageSize(imageSeed(5, "actas/GUB/"+strings.Repeat("a", i%50)+string(rune('a'+i%26))+".jpg"+string(rune(i))), 100, 200)
		lo, hi = min(lo, s), max(hi, s)
	}
	if lo != 100 || hi != 200 {
		t.Errorf("sizes span [%d, %d], want [100, 200]", lo, hi)
	}
}

func TestImagesOnDiskDependOnSeed(t *testing.T) {
	opts := Options{Seed: 11, MinImage: 500, MaxImage: 900, Elections: []string{"GUB"}, Cuts: 2, Interval: 2 * time.Hour}
	write := func(seed uint64) map[string]fileState {
		o := opts
		o.Seed = seed
		n, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		if _, err := n.WriteCut(root, 1); err != nil {
			t.Fatal(err)
		}
		return snapshot(t, root)
	}
	a, b, c := write(11), write(11), write(12)
	images := 0
	for p, s := range a {
		if !strings.HasPrefix(p, "actas/") {
			continue
		}
		images++
		if b[p].sha != s.sha {
			t.Errorf("%s differs between two runs with the same seed", p)
		}
		if cs, ok := c[p]; !ok || cs.sha == s.sha {
			t.Errorf("%s is missing or identical with another seed", p)
		}
		if s.size < 500 || s.size > 900 {
			t.Errorf("%s has %d bytes, want [500, 900]", p, s.size)
		}
		if path.Ext(p) != ".jpg" {
			t.Errorf("%s: not a .jpg", p)
		}
	}
	if images == 0 {
		t.Fatal("no image by 22:00")
	}
	t.Logf("%d GUB images by 22:00", images)
}

func TestJSONIsValidAndDeterministic(t *testing.T) {
	k := 6
	n1, n2 := smallNight(t, 21), smallNight(t, 21)
	p1, err := n1.plan(k, n1.ReplayTime(k))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := n2.plan(k, n2.ReplayTime(k))
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.files) != len(p2.files) || len(p1.images) != len(p2.images) {
		t.Fatalf("two runs differ in size: %d/%d files, %d/%d images", len(p1.files), len(p2.files), len(p1.images), len(p2.images))
	}
	jsonFiles := 0
	for i, f := range p1.files {
		if f.path != p2.files[i].path || !bytes.Equal(f.data, p2.files[i].data) {
			t.Errorf("%s differs between two runs", f.path)
		}
		if path.Ext(f.path) == ".json" {
			jsonFiles++
			if !json.Valid(f.data) {
				t.Errorf("%s is not valid JSON", f.path)
			}
		}
	}
	if last := p1.files[len(p1.files)-1].path; last != "json/main.json" {
		t.Errorf("last file written is %s, want json/main.json", last)
	}
	if jsonFiles != 1+3+26+26+217 {
		t.Errorf("%d JSON files, want main + 3 totals + 26 + 26 districts + 217 municipalities", jsonFiles)
	}
	// The totals agree with the CSV summary of the same cut.
	id := n1.CutID(k)
	for _, e := range n1.elections {
		var totals resultsDoc
		if err := json.Unmarshal(planFile(t, p1, e.totalsPath(id)), &totals); err != nil {
			t.Fatal(err)
		}
		s := parseCSV(t, planFile(t, p1, "datos/"+e.csvName())).summary()
		if got := []string{strconv.FormatInt(totals.Actas.Expected, 10), strconv.FormatInt(totals.Actas.Captured, 10), strconv.FormatInt(totals.Actas.Counted, 10), totals.Actas.CapturedPct, strconv.FormatInt(totals.Nominal, 10), totals.Turnout}; strings.Join(got, ",") !=
			strings.Join([]string{s["ACTAS_ESPERADAS"], s["ACTAS_CAPTURADAS"], s["ACTAS_CONTABILIZADAS"], s["PORCENTAJE_ACTAS_CAPTURADAS"], s["LISTA_NOMINAL_ACTAS_CONTABILIZADAS"], s["PORCENTAJE_PARTICIPACION_CIUDADANA"]}, ",") {
			t.Errorf("%s totals %v disagree with the CSV summary %v", e.code, got, s)
		}
		var sumVotes, sumCounted int64
		for _, v := range totals.Votes {
			sumVotes += v.Votes
		}
		for _, a := range totals.Areas {
			if !strings.HasPrefix(a.Path, "json/"+id+"/"+e.code+"/") {
				t.Errorf("%s totals name area file %s, outside the cut's JSON directory", e.code, a.Path)
			}
			var ad resultsDoc
			if err := json.Unmarshal(planFile(t, p1, a.Path), &ad); err != nil {
				t.Fatal(err)
			}
			sumCounted += ad.Actas.Counted
		}
		if sumVotes != totals.TotalVotes {
			t.Errorf("%s: votes per column add up to %d, total_votes is %d", e.code, sumVotes, totals.TotalVotes)
		}
		if sumCounted > totals.Actas.Counted || sumCounted < totals.Actas.Counted-1 {
			t.Errorf("%s: areas count %d actas, the state %d", e.code, sumCounted, totals.Actas.Counted)
		}
	}
	var m mainDoc
	if err := json.Unmarshal(planFile(t, p1, "json/main.json"), &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		data := planFile(t, p1, f.Path)
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(data)) != f.Size {
			t.Errorf("main.json size or hash of %s is wrong", f.Path)
		}
		if !strings.HasPrefix(f.Path, "json/"+id+"/") && f.Path != "datos/"+id+"_PREP_PUE.zip" {
			t.Errorf("main.json lists %s with a hash; its path is not unique to the cut", f.Path)
		}
	}
	if len(m.Files) != jsonFiles {
		t.Errorf("main.json lists %d files, want the zip and the %d JSON files of the cut", len(m.Files), jsonFiles-1)
	}
	for _, d := range m.Downloads {
		planFile(t, p1, d)
	}
	if len(m.Downloads) != 6 {
		t.Errorf("main.json downloads %q, want the 3 CSVs and 3 candidaturas files", m.Downloads)
	}
}

// TestTreePaths checks every path of the full final cut: valid for prepcast
// (safepath), unique, and acta images named like the IEE's.
func TestTreePaths(t *testing.T) {
	p := finalPlan(t)
	nameRe := regexp.MustCompile(`^actas/(GUB|DIP_LOC|AYUN)/(Gubernatura|Diputaciones|Ayuntamientos)_(` +
		`\d{3}_[A-Z0-9]+(_[A-Z0-9]+)*_\d{4}_[BCESAM]\d{2}(C\d{2})?(_[A-Z]+)?(_\d+)?` + `|` +
		`000_0000_M\d{2}` + `|` + `FUERA_DE_CATALOGO_\d{2})\.jpg$`)
	seen := map[string]bool{}
	perElection := map[string]int{}
	for _, rel := range append(pathsOf(p.files), imagePaths(p.images)...) {
		if err := safepath.Check(rel); err != nil {
			t.Errorf("%v", err)
		}
		if seen[rel] {
			t.Errorf("%s appears twice", rel)
		}
		seen[rel] = true
		if strings.HasPrefix(rel, "actas/") {
			perElection[strings.Split(rel, "/")[1]]++
			if !nameRe.MatchString(rel) {
				t.Errorf("image name %s is not in the IEE's style", rel)
			}
		}
	}
	// One image per acta with a CODIGO_INTEGRIDAD in the IEE's final files.
	for code, want := range map[string]int{"GUB": 7328, "DIP_LOC": 7379, "AYUN": 7251} {
		if perElection[code] != want {
			t.Errorf("%s: %d images, want %d", code, perElection[code], want)
		}
	}
	for _, want := range []string{
		"actas/GUB/Gubernatura_002_HUAUCHINANGO_DE_DEGOLLADO_0424_E01C01.jpg",
		"actas/GUB/Gubernatura_000_0000_M00.jpg",
		"actas/DIP_LOC/Diputaciones_002_HUAUCHINANGO_DE_DEGOLLADO_0595_S01_EMR.jpg",
		"actas/DIP_LOC/Diputaciones_002_HUAUCHINANGO_DE_DEGOLLADO_0595_S01_ERP.jpg",
		"actas/AYUN/Ayuntamientos_FUERA_DE_CATALOGO_01.jpg",
	} {
		if !seen[want] {
			t.Errorf("no %s", want)
		}
	}
}

func pathsOf(fs []smallFile) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.path)
	}
	return out
}

func imagePaths(imgs []imageFile) []string {
	var out []string
	for _, i := range imgs {
		out = append(out, i.path)
	}
	return out
}
