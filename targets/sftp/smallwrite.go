package sftp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// smallWriteMax is the largest file written in two round trips on the
// pipelined session (see writeSmall): the SFTP client sends a file's
// requests one after the other (open, write, fstat, close), four round
// trips however small the file, which on a distant difusor cost more than
// the bytes of the many small JSON files a cut rewrites.
const smallWriteMax = 512 << 10

// writeSmall writes data to abs, created or replaced (see replaceOpen):
// the open, then in
// one go every write, the fstat that checks the size, the fsync (when
// flush; fsync@openssh.com) and the close; two round trips. It returns the
// attributes the fstat reported. Any failure is returned after every reply
// arrived, with the handle closed.
func (s *rawSession) writeSmall(c *conn, g *guard, abs string, data []byte, flush bool) (fileAttrs, error) {
	h, err := replaceOpen(c, abs, func() ([]byte, error) {
		return handle(s.send(fxpOpen, sftpStr(abs), be32(fxfWrite|fxfCreat|fxfTrunc), be32(0)))
	})
	if err != nil {
		return fileAttrs{}, err
	}
	g.alive()
	hs := sftpStr(string(h))
	var writes []<-chan rawReply
	for off := 0; off < len(data); off += rawChunk {
		end := min(off+rawChunk, len(data))
		writes = append(writes, s.send(fxpWrite, hs, be64(uint64(off)), sftpStr(string(data[off:end]))))
	}
	stat := s.send(fxpFstat, hs)
	var sync <-chan rawReply
	if flush {
		sync = s.send(fxpExtended, sftpStr("fsync@openssh.com"), hs)
	}
	closed := s.send(fxpClose, hs)
	var errs []error
	for _, w := range writes {
		if err := status(w); err != nil {
			errs = append(errs, fmt.Errorf("write: %w", err))
		}
		g.alive()
	}
	a, err := attrs(stat)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("stat after writing: %w", err))
	case a.size != int64(len(data)):
		errs = append(errs, fmt.Errorf("server holds %d bytes after %d were written", a.size, len(data)))
	}
	if sync != nil {
		if err := status(sync); err != nil {
			errs = append(errs, fmt.Errorf("fsync: %w", err))
		}
	}
	if err := status(closed); err != nil {
		errs = append(errs, fmt.Errorf("close: %w", err))
	}
	g.alive()
	return a, errors.Join(errs...)
}

// fixModeByPath gives the file at abs the configured mode when the server
// reported another one (a) after writeSmall, as fixMode does for an open
// file.
func (t *Target) fixModeByPath(c *conn, abs string, a fileAttrs) error {
	want := t.cfg.FileMode
	if a.hasPerm && fs.FileMode(a.perm).Perm() == want {
		return nil
	}
	return t.setMode(func() error { return c.sftp.Chmod(abs, want) }, func() (fs.FileInfo, error) { return c.sftp.Stat(abs) }, want, "file")
}

// pipelines reports whether small files go on the pipelined session on
// the current connection (connecting if needed): where the server is
// OpenSSH's sftp-server 9.0 or later (it offers copy-data) and grants the
// session. Other servers get the SFTP client's writes.
func (t *Target) pipelines(ctx context.Context) bool {
	c, err := t.getConn(ctx)
	return err == nil && c.pipelines()
}

func (c *conn) pipelines() bool {
	if !c.feats.CopyData {
		return false
	}
	_, err := c.rawSession()
	return err == nil
}
