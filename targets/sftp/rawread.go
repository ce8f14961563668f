package sftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/prepcast/prepcast/targets"
)

// Reads on the pipelined session: the SFTP client sends a listing's and a
// small read's requests one after the other (open, read, read again to
// find the end, close), which on a distant difusor costs more round trips
// than a push has to spare before it stages. Here the requests that do
// not depend on each other's answers go together.

// maxDirEntries bounds one directory's listing: a server that keeps
// sending names is refused, not followed.
const maxDirEntries = 1 << 20

// lstatOpendir sends LSTAT and OPENDIR for abs at once and returns abs's
// attributes and, when abs is a directory, the open handle. A symbolic
// link is never listed (OPENDIR follows links): its handle, if any, is
// closed.
func (s *rawSession) lstatOpendir(abs string) (fileAttrs, []byte, error) {
	st := s.send(fxpLstat, sftpStr(abs))
	op := s.send(fxpOpendir, sftpStr(abs))
	a, serr := anyAttrs(st)
	h, herr := handle(op)
	if serr != nil || !modeOf(a).IsDir() {
		if herr == nil {
			s.send(fxpClose, sftpStr(string(h))) // nothing waits for it
		}
		if serr != nil {
			return a, nil, serr
		}
		return a, nil, nil
	}
	if herr != nil {
		return a, nil, herr
	}
	return a, h, nil
}

// readDir lists the open directory h and closes it: two READDIR requests
// in flight at all times, so a directory of up to one reply's worth of
// names (100 for OpenSSH) is listed in one round trip.
func (s *rawSession) readDir(g *guard, h []byte) ([]fs.FileInfo, error) {
	hs := sftpStr(string(h))
	defer s.send(fxpClose, hs) // nothing waits for it
	var out []fs.FileInfo
	pending := []<-chan rawReply{s.send(fxpReaddir, hs), s.send(fxpReaddir, hs)}
	for {
		r := <-pending[0]
		pending = pending[1:]
		switch {
		case r.err != nil:
			return nil, r.err
		case r.typ == fxpStatus:
			err := statusOf(r.data)
			var se *statusError
			if errors.As(err, &se) && se.code == fxEOF {
				drain(pending)
				return out, nil
			}
			if err == nil {
				err = errors.New("sftp answered a listing with OK and no names")
			}
			drain(pending)
			return nil, err
		case r.typ != fxpName:
			drain(pending)
			return nil, fmt.Errorf("unexpected sftp reply type %d, want names", r.typ)
		}
		names, err := parseNames(r.data)
		if err != nil {
			drain(pending)
			return nil, err
		}
		out = append(out, names...)
		if len(out) > maxDirEntries {
			drain(pending)
			return nil, targets.Permanent(fmt.Errorf("directory lists more than %d entries", maxDirEntries))
		}
		g.alive()
		pending = append(pending, s.send(fxpReaddir, hs))
	}
}

// drain waits for the replies still due, so that none arrives after the
// handle was closed and reused.
func drain(pending []<-chan rawReply) {
	for _, ch := range pending {
		<-ch
	}
}

// parseNames decodes an SSH_FXP_NAME reply (after its id).
func parseNames(b []byte) ([]fs.FileInfo, error) {
	if len(b) < 4 {
		return nil, errors.New("short sftp names reply")
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b))/13 { // a name, a long name and flags take 13 bytes at least
		return nil, fmt.Errorf("sftp names reply claims %d names in %d bytes", n, len(b))
	}
	out := make([]fs.FileInfo, 0, n)
	for i := uint32(0); i < n; i++ {
		name, rest, ok := str(b)
		if !ok {
			return nil, errors.New("malformed sftp names reply")
		}
		if _, rest, ok = str(rest); !ok { // the long name
			return nil, errors.New("malformed sftp names reply")
		}
		a, rest, err := parseAttrs(rest)
		if err != nil {
			return nil, err
		}
		b = rest
		out = append(out, &rawFileInfo{name: string(name), a: a})
	}
	return out, nil
}

// anyAttrs waits for an attrs reply, with or without a size.
func anyAttrs(ch <-chan rawReply) (fileAttrs, error) {
	r := <-ch
	switch {
	case r.err != nil:
		return fileAttrs{}, r.err
	case r.typ == fxpStatus:
		if err := statusOf(r.data); err != nil {
			return fileAttrs{}, err
		}
		return fileAttrs{}, errors.New("sftp stat answered OK without attributes")
	case r.typ != fxpAttrs:
		return fileAttrs{}, fmt.Errorf("unexpected sftp reply type %d, want attributes", r.typ)
	}
	a, _, err := parseAttrs(r.data)
	return a, err
}

// readSmall reads the file abs if it holds at most max bytes: the open,
// then its FSTAT and a first READ of up to readAhead bytes together, then
// the rest one request at a time; never more than max+1 bytes. A regular
// file must hold the size the server reports.
func (s *rawSession) readSmall(g *guard, abs string, max int64) ([]byte, error) {
	const readAhead = 32 << 10
	h, err := handle(s.send(fxpOpen, sftpStr(abs), be32(fxfRead), be32(0)))
	if err != nil {
		return nil, err
	}
	hs := sftpStr(string(h))
	defer s.send(fxpClose, hs) // nothing waits for it: the content is read
	stat := s.send(fxpFstat, hs)
	first := s.send(fxpRead, hs, be64(0), be32(uint32(min(max+1, readAhead))))
	a, serr := attrs(stat)
	b, rerr := readData(first)
	if serr != nil {
		return nil, serr
	}
	regular := modeOf(a).IsRegular()
	if a.size > max && regular {
		return nil, targets.TooLarge(max)
	}
	out := append([]byte(nil), b...)
	for rerr == nil && len(b) > 0 && int64(len(out)) <= max && !(regular && int64(len(out)) >= a.size) {
		g.alive()
		want := min(max+1-int64(len(out)), readAhead)
		b, rerr = readData(s.send(fxpRead, hs, be64(uint64(len(out))), be32(uint32(want))))
		out = append(out, b...)
	}
	if rerr != nil {
		return nil, rerr
	}
	if int64(len(out)) > max {
		return nil, targets.TooLarge(max)
	}
	if regular && int64(len(out)) != a.size {
		return nil, fmt.Errorf("read %d bytes but the server reports %d", len(out), a.size)
	}
	return out, nil
}

// readData waits for a read reply: the data, or none at the end of the
// file.
func readData(ch <-chan rawReply) ([]byte, error) {
	b, err := data(ch)
	var se *statusError
	if errors.As(err, &se) && se.code == fxEOF {
		return nil, nil
	}
	return b, err
}

// modeOf converts a POSIX st_mode to an fs.FileMode; a server that
// reports no mode reports a regular file, as the SFTP client takes it.
func modeOf(a fileAttrs) fs.FileMode {
	if !a.hasPerm {
		return 0
	}
	m := fs.FileMode(a.mode & 0o777)
	switch a.mode & 0o170000 {
	case 0o040000:
		m |= fs.ModeDir
	case 0o120000:
		m |= fs.ModeSymlink
	case 0o100000:
	case 0o010000:
		m |= fs.ModeNamedPipe
	case 0o140000:
		m |= fs.ModeSocket
	case 0o020000:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		m |= fs.ModeDevice
	default:
		m |= fs.ModeIrregular
	}
	return m
}

// rawFileInfo is one listed name.
type rawFileInfo struct {
	name string
	a    fileAttrs
}

func (f *rawFileInfo) Name() string       { return f.name }
func (f *rawFileInfo) Size() int64        { return f.a.size }
func (f *rawFileInfo) Mode() fs.FileMode  { return modeOf(f.a) }
func (f *rawFileInfo) ModTime() time.Time { return mtimeOf(f.a) }
func (f *rawFileInfo) IsDir() bool        { return f.Mode().IsDir() }
func (f *rawFileInfo) Sys() any           { return nil }

// mtimeOf is the modification time, or the zero time when the server
// reports none.
func mtimeOf(a fileAttrs) time.Time {
	if !a.hasMtime {
		return time.Time{}
	}
	return time.Unix(a.mtime, 0)
}
