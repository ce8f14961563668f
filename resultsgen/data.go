package resultsgen

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/csv"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

//go:embed data/*.csv.zst
var dataFS embed.FS

// ieeZone is the zone of every date in the IEE files and of the cut labels:
// "tiempo del centro", UTC-6 all year since 2022.
var ieeZone = time.FixedZone("UTC-6", -6*60*60)

var (
	// opening is when the Puebla 2024 PREP opened: the default first cut and
	// the instant that cut 0 replays.
	opening = time.Date(2024, 6, 2, 20, 0, 0, 0, ieeZone)
	// closing is the IEE's final cut. A cut that replays this instant or later
	// shows the final results, including special casillas in the turnout.
	closing = time.Date(2024, 6, 3, 20, 0, 0, 0, ieeZone)
)

const bom = "\ufeff"

// electionSpec is what differs between the three elections' files.
type electionSpec struct {
	code        string // "GUB", "DIP_LOC", "AYUN"
	imageWord   string // first word of an acta image name
	areaIDCol   string // per-acta column naming the district or municipality
	areaNameCol string
	areaKind    string // "distrito" or "municipio", as written in the JSON
	areaDir     string // directory of the per-area JSON files
	candAreaCol string // column of the candidaturas file naming the area; "" if state-wide
	candNameCol string
}

var specs = []electionSpec{
	{code: "GUB", imageWord: "Gubernatura", areaIDCol: "ID_DISTRITO", areaNameCol: "DISTRITO",
		areaKind: "distrito", areaDir: "distritos", candNameCol: "CANDIDATURA"},
	{code: "DIP_LOC", imageWord: "Diputaciones", areaIDCol: "ID_DISTRITO_LOCAL", areaNameCol: "DISTRITO_LOCAL",
		areaKind: "distrito", areaDir: "distritos", candAreaCol: "ID_DISTRITO_LOCAL", candNameCol: "CANDIDATURA_PROPIETARIA"},
	{code: "AYUN", imageWord: "Ayuntamientos", areaIDCol: "ID_MUNICIPIO", areaNameCol: "MUNICIPIO",
		areaKind: "municipio", areaDir: "municipios", candAreaCol: "ID_MUNICIPIO_LOCAL", candNameCol: "CANDIDATURA_PROPIETARIA"},
}

func (s electionSpec) csvName() string  { return "PUE_" + s.code + "_2024.csv" }
func (s electionSpec) candName() string { return "PUE_" + s.code + "_Candidaturas_2024.csv" }

// rowState is an acta's status in the IEE's final (20:00) file.
type rowState uint8

const (
	statePending      rowState = iota // not captured even at the final cut
	stateCounted                      // CONTABILIZADA 1
	stateNotCounted                   // CONTABILIZADA 0, including every "SIN ACTA"
	stateOutOfCatalog                 // CONTABILIZADA 2: "FUERA DE CATALOGO"
)

// row is one acta of an election as the final cut shows it, with what is
// needed to show it at an earlier instant.
type row struct {
	line    []byte // the IEE's bytes, without the line feed
	pending []byte // the row before the acta was registered; nil: no row at all
	at      int64  // unix second from which line is shown (unused for statePending)
	state   rowState
	// inconsistent rows count in PORCENTAJE_ACTAS_INCONSISTENCIAS.
	inconsistent bool
	special      bool  // casilla especial (TIPO_CASILLA S)
	area         int   // index in election.areas, -1 for none
	nominal      int64 // LISTA_NOMINAL
	total        int64 // TOTAL_VOTOS_CALCULADO
	votes        []int64
	image        string // acta image file name, "" if the acta has no image
	key          uint64 // seed-independent sampling key, shared by the same casilla across elections
}

type area struct {
	id, name string
}

type candidate struct {
	name string
	cols []int // indexes into election.voteNames
}

// election is one election's final-cut data, parsed once and shared read-only.
type election struct {
	electionSpec
	line1, summaryHeader, actaHeader []byte
	candidatures                     []byte // the candidaturas CSV, byte for byte
	voteNames                        []string
	rows                             []row
	areas                            []area                 // numeric ids, ascending
	cands                            map[string][]candidate // by area id; "" is state-wide
}

type source struct {
	elections []*election // in specs order
}

// loadSource parses the embedded data once per process.
var loadSource = sync.OnceValues(func() (*source, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("load replay data: %w", err)
	}
	defer dec.Close()
	read := func(name string) ([]byte, error) {
		z, err := dataFS.ReadFile("data/" + name + ".zst")
		if err != nil {
			return nil, fmt.Errorf("load replay data: %w", err)
		}
		b, err := dec.DecodeAll(z, nil)
		if err != nil {
			return nil, fmt.Errorf("load replay data %s: %w", name, err)
		}
		return b, nil
	}
	src := &source{}
	for _, s := range specs {
		raw, err := read(s.csvName())
		if err != nil {
			return nil, err
		}
		cand, err := read(s.candName())
		if err != nil {
			return nil, err
		}
		e, err := parseElection(s, raw, cand)
		if err != nil {
			return nil, fmt.Errorf("load replay data %s: %w", s.csvName(), err)
		}
		src.elections = append(src.elections, e)
	}
	return src, nil
})

// parseElection reads an IEE per-acta file (final cut) and its candidaturas file.
func parseElection(s electionSpec, raw, cand []byte) (*election, error) {
	if !bytes.HasPrefix(raw, []byte(bom)) {
		return nil, fmt.Errorf("no UTF-8 byte order mark")
	}
	if bytes.ContainsAny(raw, "\"\r") {
		return nil, fmt.Errorf("quoted fields or CR line ends are not supported")
	}
	lines := bytes.Split(raw[len(bom):], []byte("\n"))
	if len(lines) < 8 || len(lines[2]) != 0 || len(lines[5]) != 0 || len(lines[len(lines)-1]) != 0 {
		return nil, fmt.Errorf("not in the IEE layout (name, cut, empty, summary header, summary, empty, acta header, rows, final line feed)")
	}
	e := &election{
		electionSpec:  s,
		line1:         lines[0],
		summaryHeader: lines[3],
		actaHeader:    lines[6],
		candidatures:  cand,
	}
	header := strings.Split(string(lines[6]), ",")
	col := make(map[string]int, len(header))
	for i, h := range header {
		col[h] = i
	}
	need := func(name string) (int, error) {
		i, ok := col[name]
		if !ok {
			return 0, fmt.Errorf("acta header lacks column %s", name)
		}
		return i, nil
	}
	var c struct {
		clave, areaID, areaName, tipoCasilla, tipoActa, firstTotal, firstVote, lastVote int
		asentado, calculado, nominal, obs, cont, code, acopio, verif                    int
	}
	for _, f := range []struct {
		dst  *int
		name string
	}{
		{&c.clave, "CLAVE_CASILLA"}, {&c.areaID, s.areaIDCol}, {&c.areaName, s.areaNameCol},
		{&c.tipoCasilla, "TIPO_CASILLA"}, {&c.tipoActa, "TIPO_ACTA"},
		{&c.firstTotal, "TOTAL_BOLETAS_SOBRANTES"}, {&c.firstVote, "PAN"}, {&c.lastVote, "NULOS"},
		{&c.asentado, "TOTAL_VOTOS_ASENTADO"}, {&c.calculado, "TOTAL_VOTOS_CALCULADO"},
		{&c.nominal, "LISTA_NOMINAL"}, {&c.obs, "OBSERVACIONES"}, {&c.cont, "CONTABILIZADA"},
		{&c.code, "CODIGO_INTEGRIDAD"}, {&c.acopio, "FECHA_HORA_ACOPIO"}, {&c.verif, "FECHA_HORA_VERIFICACION"},
	} {
		var err error
		if *f.dst, err = need(f.name); err != nil {
			return nil, err
		}
	}
	if !(c.firstTotal < c.firstVote && c.firstVote <= c.lastVote && c.lastVote < c.asentado &&
		c.asentado+1 == c.calculado && c.calculado+1 == c.nominal && c.nominal+2 == c.obs) {
		return nil, fmt.Errorf("acta columns are not in the IEE order")
	}
	e.voteNames = header[c.firstVote : c.lastVote+1]

	areaIdx := map[string]int{}
	type areaRaw struct{ id, name string }
	var areaOrder []areaRaw
	body := lines[7 : len(lines)-1]
	e.rows = make([]row, len(body))
	fields := make([][]byte, 0, len(header))
	// Seconds of the last verification per raw area value, and overall.
	lastVerif := map[string]int64{}
	var lastAll int64
	sinActa := []int{}
	outOfCatalog := []int{}
	imageSeen := map[string]int{}
	sampleSeen := map[string]int{}
	for i, line := range body {
		fields = splitFields(fields[:0], line)
		if len(fields) != len(header) {
			return nil, fmt.Errorf("row %d has %d fields, the header %d", i+8, len(fields), len(header))
		}
		r := &e.rows[i]
		r.line = line
		r.area = -1
		areaID := strings.TrimPrefix(string(fields[c.areaID]), "'")
		if isDigits(areaID) {
			idx, ok := areaIdx[areaID]
			if !ok {
				idx = len(areaOrder)
				areaIdx[areaID] = idx
				areaOrder = append(areaOrder, areaRaw{areaID, string(fields[c.areaName])})
			}
			r.area = idx
		}
		r.special = string(fields[c.tipoCasilla]) == "S"
		switch string(fields[c.cont]) {
		case "1":
			r.state = stateCounted
		case "0":
			r.state = stateNotCounted
		case "2":
			r.state = stateOutOfCatalog
		case "-":
			r.state = statePending
		default:
			return nil, fmt.Errorf("row %d: unknown CONTABILIZADA %q", i+8, fields[c.cont])
		}
		switch string(fields[c.obs]) {
		case "ALGUN CAMPO ILEGIBLE O SIN DATO", "TODOS ILEGIBLES O SIN DATO", "EXCEDE LISTA NOMINAL":
			r.inconsistent = true
		}
		r.nominal = parseCount(fields[c.nominal])
		r.total = parseCount(fields[c.calculado])
		if r.state == stateCounted {
			r.votes = make([]int64, len(e.voteNames))
			for j := range r.votes {
				r.votes[j] = parseCount(fields[c.firstVote+j])
			}
		}
		switch r.state {
		case stateCounted, stateNotCounted:
			r.pending = pendingRow(fields, c.firstTotal, c.asentado, c.calculado, c.obs)
			if t, ok := parseIEETime(fields[c.verif]); ok {
				r.at = t
				rawArea := string(fields[c.areaID])
				lastVerif[rawArea] = max(lastVerif[rawArea], t)
				lastAll = max(lastAll, t)
			} else {
				sinActa = append(sinActa, i)
			}
		case stateOutOfCatalog:
			outOfCatalog = append(outOfCatalog, i)
			if t, ok := parseIEETime(fields[c.acopio]); ok {
				r.at = t
			} else {
				r.at = -1 // resolved below
			}
		case statePending:
			r.pending = line
		}

		clave := string(fields[c.clave])
		sk := clave + "|" + string(fields[c.tipoActa])
		sampleSeen[sk]++
		h := fnv.New64a()
		fmt.Fprintf(h, "%s#%d", clave, sampleSeen[sk])
		r.key = h.Sum64()

		if isSHA256Hex(fields[c.code]) {
			var base string
			if r.state == stateOutOfCatalog {
				base = fmt.Sprintf("%s_FUERA_DE_CATALOGO_%02d", s.imageWord, len(outOfCatalog))
			} else {
				base = imageBase(s.imageWord, areaID, string(fields[c.areaName]), clave, string(fields[c.tipoActa]))
			}
			imageSeen[base]++
			if n := imageSeen[base]; n > 1 {
				base += "_" + strconv.Itoa(n)
			}
			r.image = base + ".jpg"
		}
	}
	// An acta without any time ("SIN ACTA": the package came without it) is
	// registered in one batch per district or municipality, when that area's
	// last acta was verified. Checked against the IEE's 18:00 Gubernatura cut,
	// this is the best per-area rule the final file supports.
	for _, i := range sinActa {
		r := &e.rows[i]
		fields = splitFields(fields[:0], r.line)
		if t, ok := lastVerif[string(fields[c.areaID])]; ok {
			r.at = t
		} else {
			r.at = lastAll
		}
	}
	for _, i := range outOfCatalog {
		if e.rows[i].at < 0 {
			e.rows[i].at = lastAll
		}
	}
	// Areas sorted by id; remap the rows' indexes.
	order := make([]int, len(areaOrder))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		x, y := areaOrder[a].id, areaOrder[b].id
		return cmp.Or(cmp.Compare(len(x), len(y)), cmp.Compare(x, y))
	})
	remap := make([]int, len(areaOrder))
	for newIdx, old := range order {
		remap[old] = newIdx
		e.areas = append(e.areas, area{id: areaOrder[old].id, name: areaOrder[old].name})
	}
	for i := range e.rows {
		if e.rows[i].area >= 0 {
			e.rows[i].area = remap[e.rows[i].area]
		}
	}
	cands, err := parseCandidatures(s, cand, e.voteNames)
	if err != nil {
		return nil, fmt.Errorf("candidaturas: %w", err)
	}
	e.cands = cands
	return e, nil
}

// pendingRow renders an acta as the IEE shows it before it is registered:
// identification and LISTA_NOMINAL/REPRESENTANTES_PP_CI kept, every captured
// cell "-" (cells that are "N/A" by the casilla's type stay "N/A"),
// TOTAL_VOTOS_CALCULADO 0. Verified against every row that changed between
// the IEE's 18:00 and 20:00 Gubernatura cuts.
func pendingRow(fields [][]byte, firstTotal, asentado, calculado, obs int) []byte {
	var b bytes.Buffer
	for j, f := range fields {
		if j > 0 {
			b.WriteByte(',')
		}
		switch {
		case j >= firstTotal && j <= asentado:
			if string(f) == "N/A" {
				b.Write(f)
			} else {
				b.WriteByte('-')
			}
		case j == calculado:
			b.WriteByte('0')
		case j >= obs:
			b.WriteByte('-')
		default:
			b.Write(f)
		}
	}
	return b.Bytes()
}

func parseCandidatures(s electionSpec, raw []byte, voteNames []string) (map[string][]candidate, error) {
	rd := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(raw, []byte(bom))))
	recs, err := rd.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("empty file")
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	party, ok1 := col["PARTIDO_CI"]
	name, ok2 := col[s.candNameCol]
	areaCol, ok3 := col[s.candAreaCol]
	if !ok1 || !ok2 || (s.candAreaCol != "" && !ok3) {
		return nil, fmt.Errorf("header %q lacks PARTIDO_CI, %s or %s", recs[0], s.candNameCol, s.candAreaCol)
	}
	voteIdx := map[string]int{}
	for i, v := range voteNames {
		voteIdx[v] = i
	}
	out := map[string][]candidate{}
	for _, rec := range recs[1:] {
		j, ok := voteIdx[rec[party]]
		if !ok {
			continue // a column this file does not have
		}
		a := ""
		if s.candAreaCol != "" {
			a = rec[areaCol]
		}
		list := out[a]
		k := 0
		for k < len(list) && list[k].name != rec[name] {
			k++
		}
		if k == len(list) {
			list = append(list, candidate{name: rec[name]})
		}
		list[k].cols = append(list[k].cols, j)
		out[a] = list
	}
	return out, nil
}

// imageBase names an acta image like the IEE's viewer: election, area number,
// area name, seccion and casilla, e.g. Gubernatura_024_TEHUACAN_1972_B01, plus
// the contigua of an extraordinaria (E01C02) and the acta kind for casillas
// with several actas (_EMR, _ERP).
func imageBase(word, areaID, areaName, clave, tipoActa string) string {
	var b strings.Builder
	b.WriteString(word)
	if isDigits(areaID) {
		b.WriteString("_" + areaID + "_" + sanitizeName(areaName) + "_")
	} else {
		b.WriteString("_000_") // no district: the vote from abroad
	}
	k := strings.TrimPrefix(clave, "'")
	if len(k) == 11 && isDigits(k[:6]) {
		b.WriteString(k[2:6]) // seccion
		b.WriteByte('_')
		b.WriteString(k[6:9]) // tipo + id
		if k[9:11] != "00" {
			b.WriteString("C" + k[9:11])
		}
	} else {
		b.WriteString(sanitizeName(k))
	}
	if suffix := strings.TrimLeft(tipoActa, "0123456789"); suffix != "" {
		b.WriteString("_" + sanitizeName(suffix))
	}
	return b.String()
}

// sanitizeName maps a name to A-Z0-9 and single underscores: "JUAN N. MENDEZ"
// becomes JUAN_N_MENDEZ, "CAÑADA" CANADA.
func sanitizeName(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToUpper(s) {
		switch r {
		case 'Á', 'À', 'Ä':
			r = 'A'
		case 'É', 'È', 'Ë':
			r = 'E'
		case 'Í', 'Ì', 'Ï':
			r = 'I'
		case 'Ó', 'Ò', 'Ö':
			r = 'O'
		case 'Ú', 'Ù', 'Ü':
			r = 'U'
		case 'Ñ':
			r = 'N'
		}
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			under = false
		} else if !under && b.Len() > 0 {
			b.WriteByte('_')
			under = true
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

func splitFields(dst [][]byte, line []byte) [][]byte {
	for {
		i := bytes.IndexByte(line, ',')
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i+1:]
	}
}

// parseIEETime reads "DD/MM/YYYY HH:MM:SS" in the IEE zone.
func parseIEETime(b []byte) (int64, bool) {
	if len(b) != 19 {
		return 0, false
	}
	t, err := time.ParseInLocation("02/01/2006 15:04:05", string(b), ieeZone)
	if err != nil {
		return 0, false
	}
	return t.Unix(), true
}

// parseCount reads a vote or list count; anything else ("-", "SIN DATO",
// "ILEGIBLE", "SIN ACTA", "N/A") counts as zero.
func parseCount(b []byte) int64 {
	if len(b) == 0 || len(b) > 18 {
		return 0
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0
		}
		n = n*10 + int64(ch-'0')
	}
	return n
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isSHA256Hex(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, ch := range b {
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F') {
			return false
		}
	}
	return true
}
