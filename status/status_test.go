package status

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixture: 4 cuts made 10 minutes apart from 01:00, five targets in every
// state, viewed at 01:32.
func fixture(t *testing.T) (Source, time.Time) {
	t.Helper()
	dir := t.TempDir()
	st, err := packager.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	src := t.TempDir()
	base := time.Date(2024, 6, 3, 7, 0, 0, 0, time.UTC) // 01:00 in Mexico City
	for i := 1; i <= 4; i++ {
		os.MkdirAll(filepath.Join(src, "json"), 0o755)
		os.WriteFile(filepath.Join(src, "json", "main.json"), []byte(fmt.Sprint(i)), 0o644)
		at := base.Add(time.Duration(i-1) * 10 * time.Minute)
		if _, err := st.Cut(context.Background(), packager.CutOptions{Source: src, Key: priv, Pointers: []string{"json/main.json"},
			Now: func() time.Time { return at }}); err != nil {
			t.Fatal(err)
		}
	}
	db, err := state.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	sha := strings.Repeat("ab", 32)
	ack := func(name string, seq int64, at time.Time) {
		ci, _ := st.Info(seq)
		if err := db.SetAck(ctx, state.Ack{Target: name, Seq: seq, CutID: ci.ID, ManifestSHA256: sha, AckedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	now := base.Add(32 * time.Minute)
	ack("el-sol", 4, base.Add(31*time.Minute))
	ack("la-jornada", 3, base.Add(21*time.Minute))
	ack("buap", 1, base.Add(2*time.Minute))
	ack("tv-azteca", 4, base.Add(30*time.Minute))
	pid := os.Getpid()
	progress := []state.Progress{
		{Target: "la-jornada", PID: pid, Seq: 4, CutID: "20240603_0130", State: state.StateStaging, BytesDone: 37 << 20, BytesTotal: 100 << 20,
			FilesDone: 40, FilesTotal: 120, RateBps: 1.5e6, Attempt: 1},
		{Target: "buap", PID: pid, Seq: 4, State: state.StateFailing, Attempt: 5,
			LastError: "push cut 4 (20240603_0130) to buap: read ack: sftp buap: read .prepcast/ack.json: connect 127.0.0.1:2222: dial: dial tcp 127.0.0.1:2222: connect: connection refused"},
		{Target: "milenio", PID: pid, Seq: 4, State: state.StateRetrying, Attempt: 3, RetryAt: now.Add(20 * time.Second),
			LastError: "upload actas/x.jpg: sftp milenio: write: connection lost"},
		{Target: "tv-azteca", PID: pid, Seq: 4, State: state.StateOK},
	}
	for _, p := range progress {
		if err := db.SetProgress(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.FlushProgress(ctx); err != nil {
		t.Fatal(err)
	}
	id, _ := db.BeginAttempt(ctx, state.Attempt{Target: "el-sol", Seq: 4, CutID: "x", N: 1, Start: base, Result: state.ResultRunning})
	db.EndAttempt(ctx, id, base.Add(2*time.Second), 82_400_000, 150, 2.0, state.ResultOK, "")
	return Source{Store: st, DB: db, Targets: []string{"el-sol", "la-jornada", "buap", "milenio", "tv-azteca"}, MaxLag: 15 * time.Minute}, now
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(p, got, 0o644)
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./status -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestStatusTableGolden(t *testing.T) {
	src, now := fixture(t)
	v, err := Build(context.Background(), src, now)
	if err != nil {
		t.Fatal(err)
	}
	zone, _ := time.LoadLocation("America/Mexico_City")
	var b bytes.Buffer
	if err := v.WriteTable(&b, zone); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.txt", b.Bytes())
	if v.AllWithinMaxLag() {
		t.Error("buap is 30 minutes behind with max_lag 15m, yet all are within max lag")
	}
	if got := []string{v.Targets[0].Name, v.Targets[len(v.Targets)-1].Name}; got[0] != "buap" {
		t.Errorf("worst first: %v", got)
	}
}

func TestStatusJSONSchema(t *testing.T) {
	src, now := fixture(t)
	v, err := Build(context.Background(), src, now)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "status.json", append(data, '\n'))
	// The documented fields are there with their types.
	var raw map[string]any
	json.Unmarshal(data, &raw)
	if raw["schema"] != Schema {
		t.Errorf("schema = %v", raw["schema"])
	}
	tg := raw["targets"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "acked_seq", "lag_cuts", "lag_seconds", "behind", "state", "detail", "bytes_done", "bytes_total", "last_push_mb_per_second"} {
		if _, ok := tg[k]; !ok {
			t.Errorf("target field %q missing", k)
		}
	}
}

func TestLagAndStates(t *testing.T) {
	src, now := fixture(t)
	v, err := Build(context.Background(), src, now)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Target{}
	for _, tg := range v.Targets {
		by[tg.Name] = tg
	}
	tests := []struct {
		name       string
		state      string
		lagCuts    int64
		lagMinutes float64
		behind     bool
	}{
		{"el-sol", StateOK, 0, 0, false},
		{"tv-azteca", StateOK, 0, 0, false},
		{"la-jornada", StatePushing, 1, 2, false}, // cut 4 made at 01:30, now 01:32
		{"buap", StateFailing, 3, 22, true},       // lacks cut 2, made at 01:10
		{"milenio", StateRetrying, 4, 32, true},   // never acked: lacks cut 1, made at 01:00
	}
	for _, tt := range tests {
		got := by[tt.name]
		if got.State != tt.state || got.LagCuts != tt.lagCuts || got.LagSeconds != tt.lagMinutes*60 || got.Behind != tt.behind {
			t.Errorf("%s: state %q lag %d cuts %.0f s behind %v; want %q %d %.0f %v", tt.name, got.State, got.LagCuts, got.LagSeconds, got.Behind,
				tt.state, tt.lagCuts, tt.lagMinutes*60, tt.behind)
		}
	}
	if tv := by["tv-azteca"]; tv.PushingSeq != 0 || tv.BytesDone != 0 || tv.LastError != "" {
		t.Errorf("an idle target shows stale progress: pushing_seq %d bytes_done %d last_error %q", tv.PushingSeq, tv.BytesDone, tv.LastError)
	}
	if d := by["la-jornada"].Detail; d != "pushing 37 % ETA 0:44" {
		t.Errorf("pushing detail %q", d)
	}
	if d := by["milenio"].Detail; !strings.HasPrefix(d, "retrying in 20s (attempt 3)") {
		t.Errorf("retrying detail %q", d)
	}
	if d := by["buap"].Detail; d != "failing: read ack: read .prepcast/ack.json: connect 127.0.0.1:2222: dial: dial tcp 127.0.0.1:2222: connect: connection refused" {
		t.Errorf("failing detail %q", d)
	}
	if v.Counts != (Counts{Targets: 5, Acked: 2, Pushing: 1, Retrying: 1, Failing: 1, Behind: 2}) {
		t.Errorf("counts %+v", v.Counts)
	}
	// Later the lag grows with the clock.
	v2, _ := Build(context.Background(), src, now.Add(10*time.Minute))
	for _, tg := range v2.Targets {
		if tg.Name == "la-jornada" && (tg.LagSeconds != 12*60 || tg.Behind) {
			t.Errorf("la-jornada 10 minutes later: lag %.0f s behind %v", tg.LagSeconds, tg.Behind)
		}
	}
}

func TestMetricsParse(t *testing.T) {
	src, now := fixture(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(&Collector{
		View:   func(ctx context.Context) (*View, error) { return Build(ctx, src, now) },
		Totals: src.DB.TotalsByTarget,
	})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels map[string]string) float64 {
		f, ok := fams[name]
		if !ok {
			t.Fatalf("metric %s missing", name)
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
		t.Fatalf("metric %s%v missing", name, labels)
		return 0
	}
	if v := value("prepcast_latest_cut_seq", nil); v != 4 {
		t.Errorf("latest seq %v", v)
	}
	if v := value("prepcast_target_lag_seconds", map[string]string{"target": "buap"}); v != 22*60 {
		t.Errorf("buap lag %v", v)
	}
	if v := value("prepcast_target_behind", map[string]string{"target": "buap"}); v != 1 {
		t.Errorf("buap behind %v", v)
	}
	if v := value("prepcast_target_state", map[string]string{"target": "la-jornada", "state": "pushing"}); v != 1 {
		t.Errorf("la-jornada pushing %v", v)
	}
	if v := value("prepcast_target_sent_bytes_total", map[string]string{"target": "el-sol"}); v != 82_400_000 {
		t.Errorf("el-sol bytes %v", v)
	}
}

// TestLastCheckInStatus checks that status shows each difusor's latest
// check and when it last passed, and leaves last_check out for one never
// checked.
func TestLastCheckInStatus(t *testing.T) {
	src, now := fixture(t)
	ctx := context.Background()
	t0 := now.Add(-48 * time.Hour)
	src.DB.RecordCheck(ctx, state.CheckRecord{Target: "el-sol", At: t0, Passed: true})
	src.DB.RecordCheck(ctx, state.CheckRecord{Target: "el-sol", At: t0.Add(time.Hour), Passed: false, Fails: 1})
	v, err := Build(ctx, src, now)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(v)
	var raw struct {
		Targets []map[string]json.RawMessage `json:"targets"`
	}
	json.Unmarshal(data, &raw)
	for _, tg := range raw.Targets {
		name := strings.Trim(string(tg["name"]), `"`)
		lc, ok := tg["last_check"]
		switch {
		case name == "el-sol" && !ok:
			t.Error("el-sol: no last_check")
		case name == "el-sol":
			var got LastCheck
			json.Unmarshal(lc, &got)
			if got.Passed || !got.Time.Equal(t0.Add(time.Hour)) || !got.LastPassed.Equal(t0) {
				t.Errorf("el-sol last_check = %s", lc)
			}
		case ok:
			t.Errorf("%s: last_check %s, but it was never checked", name, lc)
		}
	}
}

// An error is shown by its cause, read from its start (a changed host key
// is named, not cut away from the left), escaped, with the whole text
// below the table; an ok target shows no stale progress or error.
func TestTableShowsErrorsByCause(t *testing.T) {
	hostKey := "push cut 4 (20240603_013000) to d1: sftp d1: connect 127.0.0.1:2222: HOST KEY CHANGED for 127.0.0.1:2222: host_key pins ssh-ed25519 SHA256:aaaa, but the server offered ssh-ed25519 SHA256:bbbb. This may be an attack (someone in the middle) or a reinstalled server: confirm the new fingerprint with the difusor before you pin it with `ssh-keyscan -p 2222 127.0.0.1 >> /etc/prepcast/known_hosts`"
	hostile := "upload x: sftp d2: server says \x1b[2Jcleared\nsecond line \x1b]0;title\x07"
	v := &View{Latest: &Cut{Seq: 4, ID: "20240603_013000"}, Targets: []Target{
		{Name: "d1", State: StateFailing, Detail: "failing: " + Cause(hostKey), words: "failing", LastError: hostKey, LagCuts: 1},
		{Name: "d2", State: StateRetrying, Detail: "retrying", LastError: hostile, LagCuts: 1},
		{Name: "d3", State: StateOK, Detail: "ok", AckedSeq: 4, AckedID: "20240603_013000"},
	}}
	var b strings.Builder
	if err := v.WriteTable(&b, time.UTC); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	row := func(name string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, name+" ") {
				return l
			}
		}
		t.Fatalf("no row for %s:\n%s", name, out)
		return ""
	}
	if r := row("d1"); !strings.Contains(r, "connect 127.0.0.1:2222: HOST KEY CHANGED for 127.0.0.1:2222") || strings.Contains(r, "push cut 4") {
		t.Errorf("host key row does not start with the cause:\n%s", r)
	}
	if r := row("d2"); !strings.Contains(r, `upload x: server says \x1b[2Jcleared …`) {
		t.Errorf("hostile error row:\n%s", r)
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("table holds raw control bytes:\n%q", out)
	}
	if !strings.Contains(out, "errors in full:\nd2:\n    upload x: sftp d2: server says \\x1b[2Jcleared\n    second line \\x1b]0;title\\a\n") {
		t.Errorf("the whole text of a multi-line error is not below the table:\n%s", out)
	}
	if strings.Contains(out, "d1:\n") {
		t.Errorf("a one-line error shown whole in the table is repeated below it:\n%s", out)
	}
	if r := row("d3"); !strings.HasSuffix(strings.TrimSpace(r), "-") {
		t.Errorf("ok row shows a cause: %s", r)
	}
	b.Reset()
	v.WriteTableVerbose(&b, time.UTC)
	if !strings.Contains(b.String(), "d1:\n    push cut 4 (20240603_013000) to d1: sftp d1: connect") {
		t.Errorf("--verbose does not show every error in full:\n%s", b.String())
	}
}

// A package-mode difusor that trusts the institute's key on first use is
// marked in STATE and in the JSON; one given --public-key is not.
func TestKeyTrustShown(t *testing.T) {
	src, now := fixture(t)
	ctx := context.Background()
	if err := src.DB.SetKeyTrust(ctx, "el-sol", "trust-on-first-use"); err != nil {
		t.Fatal(err)
	}
	if err := src.DB.SetKeyTrust(ctx, "tv-azteca", "public-key"); err != nil {
		t.Fatal(err)
	}
	v, err := Build(ctx, src, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range v.Targets {
		switch tg.Name {
		case "el-sol":
			if tg.KeyTrust != "trust-on-first-use" || !strings.Contains(tg.Detail, "key trusted on first use") {
				t.Errorf("el-sol: key_trust %q, detail %q", tg.KeyTrust, tg.Detail)
			}
		case "tv-azteca":
			if tg.KeyTrust != "public-key" || strings.Contains(tg.Detail, "first use") {
				t.Errorf("tv-azteca: key_trust %q, detail %q", tg.KeyTrust, tg.Detail)
			}
		default:
			if tg.KeyTrust != "" {
				t.Errorf("%s: key_trust %q, never said", tg.Name, tg.KeyTrust)
			}
		}
	}
}
