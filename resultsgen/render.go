package resultsgen

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/flate"
)

// Directories of the results tree that the generator owns.
const (
	dirData  = "datos"
	dirJSON  = "json"
	dirActas = "actas"
	mainPath = "json/main.json"
)

var ownedDirs = []string{dirData, dirJSON, dirActas}

// plan is the full content of one cut: small files rendered in memory and
// acta images described by their seed, written by streaming.
type plan struct {
	files  []smallFile // write order; main.json is last
	images []imageFile
}

type smallFile struct {
	path string // slash-separated, relative to the tree root
	data []byte
}

type imageFile struct {
	path string
	size int64
	seed [32]byte
}

// tally accumulates the IEE summary counters over a set of actas.
type tally struct {
	expected, outOfCatalog, captured, counted, notCounted, inconsistent int64
	nominal, total, totalNoSpecial                                      int64
	votes                                                               []int64
}

func (t *tally) add(r *row) {
	if r.state == stateOutOfCatalog {
		t.outOfCatalog++
		return
	}
	t.captured++
	if r.inconsistent {
		t.inconsistent++
	}
	if r.state == stateNotCounted {
		t.notCounted++
		return
	}
	t.counted++
	t.nominal += r.nominal
	t.total += r.total
	if !r.special {
		t.totalNoSpecial += r.total
	}
	for i, v := range r.votes {
		t.votes[i] += v
	}
}

// turnout is PORCENTAJE_PARTICIPACION_CIUDADANA: special casillas count only
// in the final cut, as the IEE's field dictionary prescribes.
func (t *tally) turnout(final bool) string {
	if final {
		return pct(t.total, t.nominal)
	}
	return pct(t.totalNoSpecial, t.nominal)
}

// summaryLine renders line 5 of an IEE file, with the IEE's formats:
// percentages truncated (not rounded) to four decimals, vote totals with ".0".
func (t *tally) summaryLine(final bool) string {
	return fmt.Sprintf("%d,%d,%d,%d,%s,%d,%s,%s,%d,%d,%d.0,%d.0,%s",
		t.expected, t.captured+t.outOfCatalog, t.outOfCatalog, t.captured, pct(t.captured, t.expected),
		t.counted, pct(t.counted, t.expected), pct(t.inconsistent, t.expected), t.notCounted,
		t.nominal, t.total, t.totalNoSpecial, t.turnout(final))
}

// pct is 100*n/d truncated to four decimals, "0.0000" when d is 0.
func pct(n, d int64) string {
	if d <= 0 || n <= 0 {
		return "0.0000"
	}
	v := n * 1_000_000 / d
	return fmt.Sprintf("%d.%04d", v/10_000, v%10_000)
}

// cutLabel is line 2 of the IEE files, e.g. "03/06/2024 20:00 (UTC-6)".
func cutLabel(t time.Time) string { return t.In(ieeZone).Format("02/01/2006 15:04") + " (UTC-6)" }

// electionCut is one election rendered at one instant.
type electionCut struct {
	csv   []byte
	state tally
	areas []tally
	imgs  []*row // visible actas with an image
}

// renderElection renders e's CSV as the IEE would publish it at instant at
// (unix seconds) with cut label label, and tallies the state and each area.
func renderElection(e *nightElection, at int64, final bool, label string) *electionCut {
	c := &electionCut{
		state: tally{votes: make([]int64, len(e.voteNames))},
		areas: make([]tally, len(e.areas)),
	}
	for i := range c.areas {
		c.areas[i].votes = make([]int64, len(e.voteNames))
	}
	visible := func(r *row) bool { return r.state != statePending && r.at <= at }
	// First pass: the counters, which precede the rows in the file.
	size := len(bom) + len(e.line1) + len(label) + len(e.summaryHeader) + len(e.actaHeader) + 256
	for _, r := range e.rows {
		if r.state != stateOutOfCatalog {
			c.state.expected++
			if r.area >= 0 {
				c.areas[r.area].expected++
			}
		}
		if !visible(r) {
			size += len(r.pending) + 1
			continue
		}
		size += len(r.line) + 1
		c.state.add(r)
		if r.area >= 0 {
			c.areas[r.area].add(r)
		}
		if r.image != "" {
			c.imgs = append(c.imgs, r)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, bom...)
	b = append(b, e.line1...)
	b = append(b, "\n"+label+"\n\n"...)
	b = append(b, e.summaryHeader...)
	b = append(b, "\n"+c.state.summaryLine(final)+"\n\n"...)
	b = append(b, e.actaHeader...)
	b = append(b, '\n')
	for _, r := range e.rows {
		switch {
		case visible(r):
			b = append(append(b, r.line...), '\n')
		case r.pending != nil:
			b = append(append(b, r.pending...), '\n')
		}
	}
	c.csv = b
	return c
}

// JSON documents of the site. Field order is fixed by the structs and every
// list is in a defined order, so equal cuts give equal bytes.
type (
	resultsDoc struct {
		Election   string         `json:"election"`
		Name       string         `json:"name"`
		Area       *areaDoc       `json:"area,omitempty"`
		Actas      actasDoc       `json:"actas"`
		Nominal    int64          `json:"nominal_list"`
		TotalVotes int64          `json:"total_votes"`
		Turnout    string         `json:"turnout_pct"`
		Votes      []partyVotes   `json:"votes"`
		Candidates []candidateDoc `json:"candidates,omitempty"`
		Areas      []areaRef      `json:"areas,omitempty"`
	}
	areaDoc struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	areaRef struct {
		ID   string `json:"id"`
		Name string `json:"name"`
		Path string `json:"path"`
	}
	actasDoc struct {
		Expected        int64  `json:"expected"`
		Registered      int64  `json:"registered"`
		OutOfCatalog    int64  `json:"out_of_catalog"`
		Captured        int64  `json:"captured"`
		CapturedPct     string `json:"captured_pct"`
		Counted         int64  `json:"counted"`
		CountedPct      string `json:"counted_pct"`
		InconsistentPct string `json:"inconsistent_pct"`
		NotCounted      int64  `json:"not_counted"`
	}
	partyVotes struct {
		Party string `json:"party"`
		Votes int64  `json:"votes"`
	}
	candidateDoc struct {
		Name    string   `json:"name"`
		Parties []string `json:"parties"`
		Votes   int64    `json:"votes"`
	}
	// mainDoc is json/main.json. Files lists only paths unique to the cut
	// (its JSON directory and its zip), so a hash it states holds for as
	// long as the file exists; Downloads names the stable-path files, which
	// every cut rewrites in place, without a hash.
	mainDoc struct {
		Cut       cutDoc    `json:"cut"`
		Elections []string  `json:"elections"`
		JSONDir   string    `json:"json_dir"`
		Files     []fileRef `json:"files"`
		Downloads []string  `json:"downloads"`
	}
	cutDoc struct {
		ID     string `json:"id"`
		Index  int    `json:"index"`
		Time   string `json:"time"`
		Label  string `json:"label"`
		Replay string `json:"replay"`
		Final  bool   `json:"final"`
	}
	fileRef struct {
		Path   string `json:"path"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
)

func (e *nightElection) resultsDoc(t *tally, a *area, final bool) resultsDoc {
	d := resultsDoc{
		Election: e.code,
		Name:     string(e.line1),
		Actas: actasDoc{
			Expected:        t.expected,
			Registered:      t.captured + t.outOfCatalog,
			OutOfCatalog:    t.outOfCatalog,
			Captured:        t.captured,
			CapturedPct:     pct(t.captured, t.expected),
			Counted:         t.counted,
			CountedPct:      pct(t.counted, t.expected),
			InconsistentPct: pct(t.inconsistent, t.expected),
			NotCounted:      t.notCounted,
		},
		Nominal:    t.nominal,
		TotalVotes: t.total,
		Turnout:    t.turnout(final),
		Votes:      make([]partyVotes, len(e.voteNames)),
	}
	for i, name := range e.voteNames {
		d.Votes[i] = partyVotes{Party: name, Votes: t.votes[i]}
	}
	candArea := ""
	if a != nil {
		d.Area = &areaDoc{Kind: e.areaKind, ID: a.id, Name: a.name}
		if e.candAreaCol != "" {
			candArea = a.id
		}
	}
	if a != nil || e.candAreaCol == "" {
		for _, c := range e.cands[candArea] {
			cd := candidateDoc{Name: c.name, Parties: []string{}}
			for _, j := range c.cols {
				cd.Parties = append(cd.Parties, e.voteNames[j])
				cd.Votes += t.votes[j]
			}
			d.Candidates = append(d.Candidates, cd)
		}
	}
	return d
}

// jsonDir is the directory of the site JSON of the cut with id id, e.g.
// json/20240603_0100. No other cut writes below it.
func jsonDir(id string) string { return dirJSON + "/" + id }

// zipPath is the path of the package of the cut with id id.
func zipPath(id string) string { return dirData + "/" + id + "_PREP_PUE.zip" }

func (e *nightElection) totalsPath(id string) string {
	return jsonDir(id) + "/" + e.code + "/totales.json"
}

func (e *nightElection) areaPath(id string, a *area) string {
	return jsonDir(id) + "/" + e.code + "/" + e.areaDir + "/" + a.id + ".json"
}

func marshalDoc(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// plan renders cut k as it stands at replay, the instant of the real night it
// shows.
func (n *Night) plan(k int, replay time.Time) (*plan, error) {
	id := n.CutID(k)
	cutTime := n.CutTime(k)
	label := cutLabel(cutTime)
	at := replay.Unix()
	final := !replay.Before(closing)

	p := &plan{}
	var downloads []string // stable paths, rewritten every cut
	var jsonFiles []smallFile
	type zipEntry struct {
		name string
		data []byte
	}
	var zipEntries []zipEntry
	for _, e := range n.elections {
		c := renderElection(e, at, final, label)
		p.files = append(p.files,
			smallFile{dirData + "/" + e.csvName(), c.csv},
			smallFile{dirData + "/" + e.candName(), e.candidatures})
		downloads = append(downloads, dirData+"/"+e.csvName(), dirData+"/"+e.candName())
		folder := id + "_PREP_" + e.code + "_PUE/"
		zipEntries = append(zipEntries,
			zipEntry{folder + e.csvName(), c.csv},
			zipEntry{folder + e.candName(), e.candidatures})

		totals := e.resultsDoc(&c.state, nil, final)
		totals.Areas = make([]areaRef, len(e.areas))
		for i := range e.areas {
			a := &e.areas[i]
			totals.Areas[i] = areaRef{ID: a.id, Name: a.name, Path: e.areaPath(id, a)}
			b, err := marshalDoc(e.resultsDoc(&c.areas[i], a, final))
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", e.areaPath(id, a), err)
			}
			jsonFiles = append(jsonFiles, smallFile{e.areaPath(id, a), b})
		}
		b, err := marshalDoc(totals)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", e.totalsPath(id), err)
		}
		jsonFiles = append(jsonFiles, smallFile{e.totalsPath(id), b})

		for _, r := range c.imgs {
			rel := dirActas + "/" + e.code + "/" + r.image
			seed := imageSeed(n.opts.Seed, rel)
			p.images = append(p.images, imageFile{path: rel, size: imageSize(seed, n.opts.MinImage, n.opts.MaxImage), seed: seed})
		}
	}

	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, 5)
	})
	for _, ze := range zipEntries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: ze.name, Method: zip.Deflate, Modified: cutTime})
		if err != nil {
			return nil, fmt.Errorf("build zip: %w", err)
		}
		if _, err := w.Write(ze.data); err != nil {
			return nil, fmt.Errorf("build zip: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("build zip: %w", err)
	}
	zipFile := smallFile{zipPath(id), zb.Bytes()}
	p.files = append(p.files, zipFile)
	p.files = append(p.files, jsonFiles...)

	m := mainDoc{
		Cut: cutDoc{
			ID:     id,
			Index:  k,
			Time:   cutTime.Format(time.RFC3339),
			Label:  label,
			Replay: replay.In(ieeZone).Format(time.RFC3339),
			Final:  final,
		},
		Elections: slices.Clone(n.opts.Elections),
		JSONDir:   jsonDir(id),
		Downloads: slices.Sorted(slices.Values(downloads)),
	}
	// Only per-cut paths get a hash: a file at a stable path changes under
	// a reader that still holds the previous main.json.
	for _, f := range append([]smallFile{zipFile}, jsonFiles...) {
		sum := sha256.Sum256(f.data)
		m.Files = append(m.Files, fileRef{Path: f.path, Size: int64(len(f.data)), SHA256: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(m.Files, func(a, b fileRef) int { return strings.Compare(a.Path, b.Path) })
	b, err := marshalDoc(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", mainPath, err)
	}
	p.files = append(p.files, smallFile{mainPath, b})
	return p, nil
}

// imageSeed derives the 32-byte seed of the image at rel from the night seed.
func imageSeed(seed uint64, rel string) [32]byte {
	h := sha256.New()
	io.WriteString(h, "prepcast/resultsgen acta image\x00")
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	h.Write(s[:])
	io.WriteString(h, path.Clean(rel))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// imageSize is uniform in [lo, hi], chosen by the image seed.
func imageSize(seed [32]byte, lo, hi int) int64 {
	span := uint64(hi-lo) + 1
	return int64(lo) + int64(binary.LittleEndian.Uint64(seed[24:])%span)
}
