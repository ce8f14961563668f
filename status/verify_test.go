package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/targets"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
	"github.com/prepcast/prepcast/targets/targettest"
)

// TestVerifyShownInStatus checks that what the rotating verification found
// reaches the operator: the "verify" object of the JSON, a short mention in
// the STATE column, and the metrics.
func TestVerifyShownInStatus(t *testing.T) {
	src, now := fixture(t)
	ctx := context.Background()
	for _, v := range []state.Verify{
		{Target: "el-sol", Next: "json/main.json", CheckedAt: now.Add(-time.Minute), Checked: 40, Mismatches: 3,
			LastMismatchAt: now.Add(-time.Minute), Pending: []string{"actas/1.jpg", "actas/2.jpg"}},
		{Target: "tv-azteca", CheckedAt: now.Add(-2 * time.Minute), Checked: 12, Rounds: 1, Mismatches: 1,
			LastMismatchAt: now.Add(-2 * time.Minute), Repaired: []string{"json/main.json"}, RepairedAt: now.Add(-2 * time.Minute)},
	} {
		if err := src.DB.SetVerify(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	v, err := Build(ctx, src, now)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Target{}
	for _, tg := range v.Targets {
		byName[tg.Name] = tg
	}
	if d := byName["el-sol"].Detail; !strings.Contains(d, "verify: 2 files differ") {
		t.Errorf("el-sol detail %q does not mention the 2 files pending repair", d)
	}
	if d := byName["tv-azteca"].Detail; !strings.Contains(d, "verify: 1 repaired 2m0s ago") {
		t.Errorf("tv-azteca detail %q does not mention the repair", d)
	}
	if byName["milenio"].Verify != nil {
		t.Error("a target never verified has a verify object")
	}
	b, _ := json.Marshal(v)
	var doc struct {
		Targets []struct {
			Name   string          `json:"name"`
			Verify json.RawMessage `json:"verify"`
		} `json:"targets"`
	}
	json.Unmarshal(b, &doc)
	for _, tg := range doc.Targets {
		if tg.Name == "el-sol" && !bytes.Contains(tg.Verify, []byte(`"mismatches":3`)) {
			t.Errorf("el-sol verify JSON %s", tg.Verify)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&Collector{View: func(ctx context.Context) (*View, error) { return Build(ctx, src, now) }})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetValue()
			}
			if m.GetCounter() != nil {
				got[key] = m.GetCounter().GetValue()
			} else {
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		"prepcast_target_verify_mismatches_total el-sol":    3,
		"prepcast_target_verify_mismatches_total tv-azteca": 1,
		"prepcast_target_verify_mismatches_total milenio":   0,
		"prepcast_target_verify_pending_files el-sol":       2,
		"prepcast_target_verify_pending_files tv-azteca":    0,
		"prepcast_target_verified_files_total el-sol":       40,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

// TestProbeIsBounded checks that status --probe reads a difusor's ack.json
// with a bound: a 600 MB file and a link to /dev/zero give a prompt probe
// error naming the difusor and the file.
func TestProbeIsBounded(t *testing.T) {
	src, now := fixture(t)
	srv := targettest.NewSFTPServer(t, "")
	os.MkdirAll(filepath.Join(srv.Root, ".prepcast"), 0o755)
	ack := filepath.Join(srv.Root, ".prepcast", "ack.json")
	for _, kind := range []string{"huge", "dev-zero"} {
		os.Remove(ack)
		if kind == "huge" {
			f, _ := os.Create(ack)
			f.Truncate(600 << 20)
			f.Close()
		} else if err := os.Symlink("/dev/zero", ack); err != nil {
			t.Fatal(err)
		}
		v, err := Build(context.Background(), src, now)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		v.ProbeTargets(context.Background(), func(name string) (targets.Target, error) {
			return newSFTP(t, name, srv), nil
		})
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: probe took %v", kind, d)
		}
		for _, tg := range v.Targets {
			p := tg.Probe
			if p == nil || p.Agrees || !strings.Contains(p.Error, publisher.AckPath) || !strings.Contains(p.Error, tg.Name) || !strings.Contains(p.Error, "larger than expected") {
				t.Errorf("%s: probe of %s = %+v, want an error naming the difusor and %s", kind, tg.Name, p, publisher.AckPath)
			}
		}
	}
	if !errors.Is(targets.TooLarge(1), targets.ErrTooLarge) {
		t.Error("TooLarge does not wrap ErrTooLarge")
	}
}

func newSFTP(t *testing.T, name string, s *targettest.Server) targets.Target {
	tg, err := sftptarget.New(sftptarget.Config{Name: name, Address: s.Addr, User: s.User, Root: s.Root,
		IdentityFile: s.ClientKeyPath, HostKey: s.HostKeyLine, OpTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}
