package sftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/internal/rdelta"
	"github.com/prepcast/prepcast/targets"
)

// csvRows makes a results-database-like file of n lines, numbered from
// first; bump changes the vote counts of every tenth line.
func csvRows(first, n, bump int) []byte {
	var b bytes.Buffer
	for i := first; i < first+n; i++ {
		v := i * 7 % 613
		if i%10 == 0 {
			v += bump
		}
		fmt.Fprintf(&b, "%d,PUEBLA,%04d,CASILLA %d,%d,%d,%d\n", i, i%2000, i%37, v, v*3%97, v%11)
	}
	return b.Bytes()
}

// rangePlan turns a planner's plan into a target's.
func rangePlan(p *rdelta.Plan, old []byte) *targets.RangePlan {
	rp := &targets.RangePlan{SrcSize: p.OldSize, Size: p.NewSize, Probe: p.Probe}
	if p.Probe >= 0 {
		rp.ProbeBytes = old[p.Probe:min(int64(len(old)), p.Probe+16)]
	}
	for _, op := range p.Ops {
		rp.Ops = append(rp.Ops, targets.RangeOp{Copy: op.Copy, Src: op.Src, Dst: op.Dst, Len: op.Len})
	}
	return rp
}

func sshdTarget(t *testing.T, opts sshdtest.Options) (*Target, *sshdtest.Server) {
	t.Helper()
	s := sshdtest.Start(t, opts)
	return newTarget(t, Config{Name: "difusor", Address: s.Addr(), User: s.User(), Root: s.Root(),
		IdentityFile: s.ClientKeyPath(), KnownHosts: s.KnownHostsFile()}), s
}

// TestWriteFileRangesOpenSSH rebuilds files on real OpenSSH servers with
// copy-data (internal-sftp, chrooted internal-sftp, sftp-server) and
// checks the bytes on the server's disk, that the source is untouched, and
// that a source of another version is refused before anything is copied.
func TestWriteFileRangesOpenSSH(t *testing.T) {
	for _, srv := range []struct {
		name string
		opts sshdtest.Options
	}{
		{"internal-sftp", sshdtest.Options{}},
		{"internal-sftp chroot", sshdtest.Options{Chroot: true}},
		{"sftp-server", sshdtest.Options{ExtraConfig: []string{"Subsystem sftp /usr/lib/openssh/sftp-server"}}},
	} {
		t.Run(srv.name, func(t *testing.T) {
			tg, s := sshdTarget(t, srv.opts)
			ctx := context.Background()
			ok, err := tg.CanCopyRanges(ctx)
			if err != nil || !ok {
				t.Fatalf("CanCopyRanges = %v, %v; OpenSSH 9.2 offers copy-data", ok, err)
			}
			old := csvRows(0, 4000, 0)
			if err := tg.WriteFile(ctx, "db.csv", bytes.NewReader(old), int64(len(old))); err != nil {
				t.Fatal(err)
			}
			if err := tg.MkdirAll(ctx, ".prepcast/staging"); err != nil {
				t.Fatal(err)
			}
			versions := map[string][]byte{
				"insertion": append(append(csvRows(0, 2000, 0), "ROW NUEVO\n"...), csvRows(2000, 2000, 0)...),
				"deletion":  append(csvRows(0, 1000, 0), csvRows(1500, 2500, 0)...),
				"append":    csvRows(0, 4300, 0),
				"shrink":    csvRows(0, 3000, 0),
				"changes":   csvRows(0, 4000, 5),
			}
			// Every matching range is copied (MinCopy -1): the server
			// handles hundreds of small ranges per file. Every other
			// file is flushed with its writes.
			flush := false
			for name, nw := range versions {
				p := rdelta.Compute(old, nw, rdelta.Options{MinCopy: -1})
				staged := ".prepcast/staging/" + name
				rp := rangePlan(p, old)
				rp.Flush, flush = flush, !flush
				if err := tg.WriteFileRanges(ctx, staged, "db.csv", rp, bytes.NewReader(nw)); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got, err := os.ReadFile(filepath.Join(s.WebRoot(), filepath.FromSlash(staged)))
				if err != nil || !bytes.Equal(got, nw) {
					t.Fatalf("%s: the server holds %d bytes (%v) that differ from the new version's %d", name, len(got), err, len(nw))
				}
				if p.Copied < int64(len(nw))/2 {
					t.Errorf("%s: only %d of %d bytes copied", name, p.Copied, len(nw))
				}
			}
			if got, _ := os.ReadFile(filepath.Join(s.WebRoot(), "db.csv")); !bytes.Equal(got, old) {
				t.Fatal("the source file changed")
			}

			// A source not older than the mark file is refused; WaitPast
			// makes whatever is written afterwards newer.
			nw := versions["changes"]
			p := rangePlan(rdelta.Compute(old, nw, rdelta.Options{MinCopy: -1}), old)
			p.SrcOlderThan = "mark"
			if err := tg.WaitPast(ctx, "db.csv", ".prepcast/clock"); err != nil {
				t.Fatal(err)
			}
			if err := tg.WriteFile(ctx, "mark", bytes.NewReader(nil), 0); err != nil {
				t.Fatal(err)
			}
			if err := tg.WriteFileRanges(ctx, ".prepcast/staging/y", "db.csv", p, bytes.NewReader(nw)); err != nil {
				t.Fatalf("source older than the mark: %v", err)
			}
			if err := tg.WaitPast(ctx, "mark", ".prepcast/clock"); err != nil {
				t.Fatal(err)
			}
			if err := tg.WriteFile(ctx, "db.csv", bytes.NewReader(old), int64(len(old))); err != nil {
				t.Fatal(err)
			}
			err = tg.WriteFileRanges(ctx, ".prepcast/staging/y", "db.csv", p, bytes.NewReader(nw))
			if !errors.Is(err, targets.ErrSourceChanged) {
				t.Fatalf("source rewritten after the mark: err %v, want ErrSourceChanged", err)
			}

			// The source already holds another version: refused.
			nw = csvRows(0, 4000, 9)
			p = rangePlan(rdelta.Compute(old, nw, rdelta.Options{MinCopy: -1}), old)
			if err := tg.WriteFile(ctx, "db.csv", bytes.NewReader(nw), int64(len(nw))); err != nil {
				t.Fatal(err)
			}
			err = tg.WriteFileRanges(ctx, ".prepcast/staging/x", "db.csv", p, bytes.NewReader(nw))
			if !errors.Is(err, targets.ErrSourceChanged) {
				t.Fatalf("source of the same size but another content: err %v, want ErrSourceChanged", err)
			}
			p.SrcSize++
			err = tg.WriteFileRanges(ctx, ".prepcast/staging/x", "db.csv", p, bytes.NewReader(nw))
			if !errors.Is(err, targets.ErrSourceChanged) {
				t.Fatalf("source of another size: err %v, want ErrSourceChanged", err)
			}
			err = tg.WriteFileRanges(ctx, ".prepcast/staging/x", "missing.csv", p, bytes.NewReader(nw))
			if !errors.Is(err, targets.ErrSourceChanged) {
				t.Fatalf("missing source: err %v, want ErrSourceChanged", err)
			}
		})
	}
}

// TestNoCopyData checks that servers without copy-data are detected as
// such: OpenSSH's sftp-server with the request refused, and gesftpserver.
func TestNoCopyData(t *testing.T) {
	subsystems := []string{"/usr/lib/openssh/sftp-server -P copy-data"}
	if _, err := os.Stat("/usr/libexec/gesftpserver"); err == nil {
		subsystems = append(subsystems, "/usr/libexec/gesftpserver")
	}
	for _, sub := range subsystems {
		t.Run(filepath.Base(sub), func(t *testing.T) {
			tg, _ := sshdTarget(t, sshdtest.Options{ExtraConfig: []string{"Subsystem sftp " + sub}})
			ok, err := tg.CanCopyRanges(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				t.Fatalf("CanCopyRanges says yes for %s", sub)
			}
		})
	}
}

// TestClockBySFTP checks the server's clock as read on the SFTP client's
// session (WaitPast on a new connection, before the pipelined session is
// open): the marker reads the server's time now, later than a file made a
// few seconds ago and earlier than one dated in the future.
func TestClockBySFTP(t *testing.T) {
	tg, s := sshdTarget(t, sshdtest.Options{})
	ctx := t.Context()
	c, err := tg.getConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	past, future := filepath.Join(s.Root(), "past"), filepath.Join(s.Root(), "future")
	for p, d := range map[string]time.Duration{past: -5 * time.Second, future: time.Hour} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, time.Now().Add(d), time.Now().Add(d)); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(s.Root(), "clock")
	pm, mm, err := clockBySFTP(c, past, marker)
	if err != nil || mm <= pm || time.Since(time.Unix(mm, 0)).Abs() > time.Minute {
		t.Errorf("a file 5 s old: file %d, marker %d, %v; want the marker later and about now", pm, mm, err)
	}
	if pm, mm, err := clockBySFTP(c, future, marker); err != nil || mm >= pm {
		t.Errorf("a file dated an hour ahead: file %d, marker %d, %v; want the marker earlier", pm, mm, err)
	}
	if _, _, err := clockBySFTP(c, filepath.Join(s.Root(), "missing"), marker); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v, want fs.ErrNotExist", err)
	}
}
