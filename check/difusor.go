package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/packager"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// Where a check writes on a difusor, relative to its root.
const (
	// PrivateDir is prepcast's private area; the check's scratch directory
	// is PrivateDir/check-<random>.
	PrivateDir = ".prepcast"
	// PublicProofDir is the public directory prepcast reserves for files
	// the public may fetch; the check's probe file is
	// PublicProofDir/check-<random>.txt.
	PublicProofDir = ".well-known/prepcast"
)

// cleanupTimeout bounds the removal of what a check wrote, even after its
// ctx was cancelled.
const cleanupTimeout = 30 * time.Second

// retained is the estimate of the room the retained cuts need.
type retained struct {
	seq   int64
	bytes int64 // of the latest cut
	cuts  int
}

// retainedEstimate reads the latest cut of store: each of the retention.cuts
// cuts a difusor may hold whole, plus one more being staged.
func retainedEstimate(store *packager.Store, cuts int) *retained {
	if store == nil {
		return nil
	}
	l, err := store.Latest()
	if err != nil || l == nil {
		return nil
	}
	return &retained{seq: l.Seq, bytes: l.Bytes, cuts: cuts}
}

func (r *retained) need() int64 { return r.bytes * int64(r.cuts+1) }

// one checks one difusor.
func (r *runner) one(ctx context.Context, tc *config.Target) (d Difusor) {
	start := r.o.Now()
	d = Difusor{Name: tc.Name, DisplayName: tc.DisplayName, Address: tc.Address, Root: tc.Root, URL: tc.URL, Started: start.UTC()}
	log := r.o.Log.With(zap.String("target", tc.Name))
	add := func(row Row) {
		if row.Call == "" {
			row.Call = callSection[row.ID]
		}
		d.Rows = append(d.Rows, row)
	}
	defer func() {
		d.Seconds = r.o.Now().Sub(start).Seconds()
		d.tally()
	}()
	ssh := r.sshRows(ctx, tc, add)
	if ssh != nil {
		defer ssh.close()
		r.sftpRows(ctx, tc, ssh, add, log)
	} else {
		for _, id := range []string{RowSFTPExtensions, RowSFTPSessions, RowPushMode, RowFreeDisk, RowUploadRate, RowWriteRename, RowFileModes} {
			if d.Row(id) == nil {
				add(Row{ID: id, Verdict: Fail, Value: "not measured", Detail: "no SFTP connection (see the SSH rows)"})
			}
		}
	}
	r.webRows(ctx, tc, add)
	return d
}

// sshState is what the SSH rows leave for the SFTP rows.
type sshState struct {
	tgt   *sftptarget.Target
	probe *probeConn
	root  string
}

func (s *sshState) close() {
	s.probe.Close()
	_ = s.tgt.Close()
}

// sshRows checks reachability, the host key and authentication, through
// targets/sftp (the same dialing, config and errors as a push) and the
// check's own connection, which tells at which step a failure happened.
func (r *runner) sshRows(ctx context.Context, tc *config.Target, add func(Row)) *sshState {
	c := r.o.Config
	banner, err := readBanner(ctx, tc.Address, c.Timeouts.Dial+c.Timeouts.Operation)
	if err != nil {
		add(Row{ID: RowOS, Verdict: Fail, Value: "not measured", Detail: "the SSH server is not reachable"})
		add(Row{ID: RowSSHReach, Verdict: Fail, Value: "unreachable", Threshold: "SSH banner from " + tc.Address,
			Detail: termsafe.String(err.Error()), Fix: fixSSHPort})
		add(Row{ID: RowSSHHostKey, Verdict: Fail, Value: "not measured"})
		add(Row{ID: RowSSHAuth, Verdict: Fail, Value: "not measured"})
		return nil
	}
	osRow := Row{ID: RowOS, Verdict: Pass, Value: banner, Threshold: "Windows, Linux, FreeBSD, Unix"}
	if name := osFromBanner(banner); name != "" {
		osRow.Value = name + " — " + banner
	}
	add(osRow)
	add(Row{ID: RowSSHReach, Verdict: Pass, Value: banner, Threshold: "SSH banner from " + tc.Address})

	var pass []byte
	if r.o.Passphrase != nil {
		if pass, err = r.o.Passphrase(tc); err != nil {
			add(Row{ID: RowSSHHostKey, Verdict: Fail, Value: "not measured", Detail: err.Error()})
			add(Row{ID: RowSSHAuth, Verdict: Fail, Value: "not measured", Detail: err.Error()})
			return nil
		}
	}
	tgt, err := sftptarget.New(sftptarget.Config{
		Name: tc.Name, Address: tc.Address, User: tc.User, Root: tc.Root,
		IdentityFile: tc.IdentityFile, Passphrase: pass, KnownHosts: tc.KnownHosts, HostKey: tc.HostKey,
		DialTimeout: c.Timeouts.Dial, OpTimeout: c.Timeouts.Operation, Keepalive: c.Timeouts.Keepalive,
		// As a push connects: a server without posix-rename is accepted
		// where the target opts in, and files get the modes a push gives.
		FileMode: tc.FileMode, DirMode: tc.DirMode, AllowNonAtomicReplace: tc.AllowNonAtomicReplace,
	}, r.o.Log)
	if err != nil {
		add(Row{ID: RowSSHHostKey, Verdict: Fail, Value: "not measured", Detail: err.Error()})
		add(Row{ID: RowSSHAuth, Verdict: Fail, Value: "not measured", Detail: err.Error()})
		return nil
	}
	// A push's connection, inspected as it is; when it fails, a connection
	// of the check's own tells which step failed (host key,
	// authentication) from what the SFTP server lacks.
	connErr := tgt.Connect(ctx)
	var probe *probeConn
	var perr error
	if connErr == nil {
		probe, perr = sharedProbe(ctx, tgt)
	} else {
		probe, perr = openProbe(ctx, tgt)
	}
	detail := func(e error) string {
		if connErr != nil {
			return termsafe.String(connErr.Error())
		}
		return termsafe.String(e.Error())
	}
	switch {
	case perr == nil:
		add(Row{ID: RowSSHHostKey, Verdict: Pass, Value: "matches the pinned key"})
		add(Row{ID: RowSSHAuth, Verdict: Pass, Value: "authenticated as " + termsafe.Clip(tc.User, 64)})
	case errors.Is(perr, sftptarget.ErrHostKey):
		add(Row{ID: RowSSHHostKey, Verdict: Fail, Value: "does not match", Detail: detail(perr),
			Fix: fixHostKey})
		add(Row{ID: RowSSHAuth, Verdict: Fail, Value: "not measured"})
	case errors.Is(perr, sftptarget.ErrAuth):
		add(Row{ID: RowSSHHostKey, Verdict: Pass, Value: "matches the pinned key"})
		add(Row{ID: RowSSHAuth, Verdict: Fail, Value: "refused", Detail: detail(perr),
			Fix: fixAuth})
	default:
		add(Row{ID: RowSSHHostKey, Verdict: Fail, Value: "not measured", Detail: detail(perr)})
		add(Row{ID: RowSSHAuth, Verdict: Fail, Value: "not measured"})
	}
	if perr != nil {
		_ = tgt.Close()
		return nil
	}
	if connErr != nil {
		// The check's own connection works but a push's does not: the
		// server lacks posix-rename or the root, which the SFTP rows say.
		probe.Close()
		_ = tgt.Close()
		add(Row{ID: RowSFTPExtensions, Verdict: Fail, Value: "not measured", Detail: termsafe.String(connErr.Error())})
		return nil
	}
	return &sshState{tgt: tgt, probe: probe, root: tc.Root}
}

// sftpRows measures what the SFTP server offers and allows, free disk,
// writing in root, the file modes the web server needs, the clock and the
// upload rate.
func (r *runner) sftpRows(ctx context.Context, tc *config.Target, s *sshState, add func(Row), log *zap.Logger) {
	c := r.o.Config
	extRow, has := extensionsRow(s.probe, tc.AllowNonAtomicReplace)
	add(extRow)
	n, serr := s.probe.sessions()
	sess := Row{ID: RowSFTPSessions, Verdict: Pass, Value: fmt.Sprint(n), Number: num(float64(n)), Unit: "sessions",
		Threshold: fmt.Sprintf("%d (what prepcast uses)", maxSessions)}
	if n >= maxSessions {
		sess.Value = fmt.Sprintf("%d or more", n)
	} else {
		sess.Verdict = Warn
		sess.Detail = fmt.Sprintf("the server refused session %d on one connection", n+1)
		if serr != nil {
			sess.Detail += ": " + termsafe.String(serr.Error())
		}
		sess.Fix = fixSessions
	}
	add(sess)
	add(pushModeRow(tc, c.Limits.FilesInFlight, n, has))

	free, ok, err := s.tgt.FreeSpace(ctx)
	fd := Row{ID: RowFreeDisk, Threshold: "≥ " + fmtBytes(r.th.MinFreeDisk)}
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		fd.Verdict, fd.Value, fd.Detail = Fail, "not measured", termsafe.String(err.Error())
	case err != nil:
		// Offered but failing on the root (MySecureShell with
		// VirtualChroot answers "no such file").
		fd.Verdict, fd.Value = Warn, "not measured"
		fd.Detail = "the server offers statvfs@openssh.com but answers it with: " + termsafe.String(err.Error())
		fd.Fix = fixFreeDiskProof
	case !ok:
		fd.Verdict, fd.Value = Warn, "not measured"
		fd.Detail = "the server does not offer statvfs@openssh.com, so free disk cannot be read over SFTP"
		fd.Fix = fixFreeDiskProof
	default:
		fd.Value, fd.Number, fd.Unit = fmtBytes(free), num(float64(free)), "bytes"
		fd.Verdict = Pass
		if free < r.th.MinFreeDisk {
			fd.Verdict = Fail
			fd.Detail = fmt.Sprintf("%s free in %s, below the call's minimum of %s", fmtBytes(free), tc.Root, fmtBytes(r.th.MinFreeDisk))
			fd.Fix = fixFreeDisk
		}
	}
	add(fd)
	if r.retained != nil && ok && err == nil {
		need := r.retained.need()
		row := Row{ID: RowRetainedCuts, Verdict: Pass, Value: fmtBytes(free) + " free", Threshold: "≥ " + fmtBytes(need),
			Detail: fmt.Sprintf("estimate: latest cut %d holds %s; %d retained cuts plus one being staged", r.retained.seq, fmtBytes(r.retained.bytes), r.retained.cuts)}
		if free < need {
			row.Verdict = Fail
			row.Fix = fixRetained
		}
		add(row)
	}

	scratch := path.Join(PrivateDir, "check-"+randomName(8))
	probeName := "check-" + randomName(8) + ".txt"
	var created []string // directories the check created, outermost first
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := s.tgt.RemoveAll(cctx, scratch); err != nil {
			log.Warn("remove the check's scratch directory", zap.String("dir", scratch), zap.Error(err))
		}
		_ = s.tgt.Remove(cctx, path.Join(PublicProofDir, probeName))
		for i := len(created) - 1; i >= 0; i-- {
			// Remove, not RemoveAll: a directory that gained other files
			// meanwhile (a push's) stays.
			_ = s.tgt.Remove(cctx, created[i])
		}
	}()
	mk := func(dir string) error {
		for _, d := range ancestors(dir) {
			_, err := s.probe.sftp.Lstat(path.Join(tc.Root, d))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				if err := s.tgt.MkdirAll(ctx, d); err != nil {
					return err
				}
				created = append(created, d)
				// A push gives the directories it creates dir_mode.
				if err := s.probe.sftp.Chmod(path.Join(tc.Root, d), tc.DirMode); err != nil {
					return fmt.Errorf("chmod %s: %w", d, err)
				}
			case err != nil:
				return fmt.Errorf("stat %s: %w", d, err)
			}
		}
		return nil
	}

	// Write, rename, read back and delete in root.
	wr := Row{ID: RowWriteRename, Verdict: Pass, Value: "works", Threshold: "write, rename, delete in " + tc.Root}
	if err := r.writeRenameDelete(ctx, s, scratch, mk); err != nil {
		wr.Verdict, wr.Value, wr.Detail = Fail, "fails", termsafe.String(err.Error())
		wr.Fix = fixWrite
		add(wr)
		add(Row{ID: RowFileModes, Verdict: Fail, Value: "not measured", Detail: "cannot write in root"})
		add(Row{ID: RowUploadRate, Verdict: Fail, Value: "not measured", Detail: "cannot write in root"})
		return
	}
	add(wr)

	// The probe file, written as a push writes a file, then fetched over HTTP.
	fm, skew := r.fileModes(ctx, tc, s, scratch, probeName, mk)
	add(fm)
	if skew != nil {
		add(*skew)
	}

	up := r.uploadRow(ctx, s, scratch)
	add(up)
	if up.Number != nil {
		add(r.readBackRow(ctx, s, scratch))
	}
}

// ancestors returns "a", "a/b", "a/b/c" for "a/b/c".
func ancestors(dir string) []string {
	var out []string
	parts := strings.Split(dir, "/")
	for i := range parts {
		out = append(out, strings.Join(parts[:i+1], "/"))
	}
	return out
}

func (r *runner) writeRenameDelete(ctx context.Context, s *sshState, scratch string, mk func(string) error) error {
	if err := mk(scratch); err != nil {
		return err
	}
	data := []byte("prepcast check " + randomName(16) + "\n")
	tmp, final := path.Join(scratch, "w.tmp"), path.Join(scratch, "w")
	if err := s.tgt.WriteFile(ctx, tmp, bytes.NewReader(data), int64(len(data))); err != nil {
		return err
	}
	if err := s.tgt.Rename(ctx, tmp, final); err != nil {
		return err
	}
	got, err := s.tgt.ReadFile(ctx, final)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(data))
	}
	if err := s.tgt.Remove(ctx, final); err != nil {
		return err
	}
	if _, err := s.probe.sftp.Lstat(path.Join(s.root, final)); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is still there after it was deleted (%v)", final, err)
	}
	return nil
}

// fileModes writes the probe file as a push writes a file (staged under
// the private area, renamed into place, file_mode applied), fetches it from
// url and compares the bytes. It also reads the difusor's clock from the
// file's mtime.
func (r *runner) fileModes(ctx context.Context, tc *config.Target, s *sshState, scratch, probeName string, mk func(string) error) (Row, *Row) {
	row := Row{ID: RowFileModes, Threshold: "HTTP 200 with the same bytes"}
	if tc.URL == "" {
		row.Verdict, row.Value = Fail, "not measured"
		row.Detail = "url is not set, so the check cannot see what the public gets"
		row.Fix = fixSetURL
		return row, nil
	}
	rel := path.Join(PublicProofDir, probeName)
	data := []byte(fmt.Sprintf("prepcast check probe for %s, %s, %s\n", tc.Name, r.o.Now().UTC().Format(time.RFC3339), randomName(16)))
	staged := path.Join(scratch, probeName)
	before := time.Now()
	err := s.tgt.WriteFile(ctx, staged, bytes.NewReader(data), int64(len(data)))
	after := time.Now()
	if err == nil {
		err = mk(PublicProofDir)
	}
	if err == nil {
		err = s.tgt.Rename(ctx, staged, rel)
	}
	if err == nil {
		err = s.probe.sftp.Chmod(path.Join(tc.Root, rel), tc.FileMode)
	}
	if err != nil {
		row.Verdict, row.Value, row.Detail = Fail, "not measured", "write the probe file: "+termsafe.String(err.Error())
		return row, nil
	}
	var skew *Row
	if fi, err := s.probe.sftp.Lstat(path.Join(tc.Root, rel)); err == nil {
		skew = clockRow(fi.ModTime(), before, after, "mtime of a file written over SFTP")
	}
	u := tc.URL + rel
	resp, err := r.web.get(ctx, u)
	switch {
	case err != nil:
		row.Verdict, row.Value = Fail, "not measured"
		row.Detail = "fetch " + u + ": " + termsafe.String(err.Error())
		row.Fix = fixCheckURL
	case resp.Status == http.StatusOK && bytes.Equal(resp.Body, data):
		row.Verdict, row.Value = Pass, "HTTP 200, same bytes"
	default:
		row.Verdict = Fail
		row.Value = fmt.Sprintf("HTTP %d", resp.Status)
		if resp.Status == http.StatusOK {
			row.Value += ", other bytes"
		}
		why := modeProblems(s, tc, rel)
		row.Detail = fmt.Sprintf("the web server cannot read files written over SFTP: %s answered HTTP %d for a file written with file_mode %04o", u, resp.Status, tc.FileMode)
		if resp.Status == http.StatusOK {
			row.Detail = fmt.Sprintf("the web server does not serve the files written over SFTP: %s answered other bytes than the file written in %s (is url the site that serves root?)", u, tc.Root)
		}
		if why != "" {
			row.Detail += "; " + why
		}
		row.Fix = fixFileModes
	}
	if skew == nil && resp != nil {
		if dt, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
			skew = clockRow(dt, before, time.Now(), "HTTP Date header")
		}
	}
	return row, skew
}

// modeProblems names the directories on the way to rel (root's parents
// included) and the file itself that another user cannot enter or read.
func modeProblems(s *sshState, tc *config.Target, rel string) string {
	var bad []string
	var paths []string
	for p := tc.Root; p != "/" && p != "."; p = path.Dir(p) {
		paths = append([]string{p}, paths...)
	}
	for _, d := range ancestors(path.Dir(rel)) {
		paths = append(paths, path.Join(tc.Root, d))
	}
	for _, p := range paths {
		fi, err := s.probe.sftp.Stat(p)
		if err != nil {
			continue
		}
		if fi.Mode().Perm()&0o001 == 0 {
			bad = append(bad, fmt.Sprintf("directory %s is %04o (others cannot enter it)", p, fi.Mode().Perm()))
		}
	}
	if fi, err := s.probe.sftp.Stat(path.Join(tc.Root, rel)); err == nil && fi.Mode().Perm()&0o004 == 0 {
		bad = append(bad, fmt.Sprintf("the file is %04o (others cannot read it)", fi.Mode().Perm()))
	}
	return strings.Join(bad, "; ")
}

// clockRow compares a time the difusor reported with the local interval in
// which it was taken.
func clockRow(remote, before, after time.Time, how string) *Row {
	var skew time.Duration
	switch {
	case remote.Before(before.Add(-time.Second)): // mtimes have whole seconds
		skew = remote.Sub(before)
	case remote.After(after.Add(time.Second)):
		skew = remote.Sub(after)
	}
	row := &Row{ID: RowClockSkew, Verdict: Pass, Value: fmt.Sprintf("%+.0f s", skew.Seconds()), Number: num(skew.Seconds()), Unit: "seconds",
		Threshold: "within ±30 s", Detail: "from the " + how}
	if skew.Abs() > 30*time.Second {
		row.Verdict = Warn
		row.Fix = fixClock
	}
	return row
}
