// Package targettest holds what tests of prepcast's targets and of their
// users need: [Mem], an in-memory [targets.Target] with fault injection
// that records its operations; [NewSFTPServer], an in-process SSH/SFTP
// server on 127.0.0.1 that can drop and stall connections; and [Run], the
// conformance suite every Target implementation must pass.
package targettest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/targets"
)

// OpKind names a [targets.Target] method in a [Mem]'s record of operations.
type OpKind string

// The operations a Mem records.
const (
	OpRead      OpKind = "read"
	OpWrite     OpKind = "write"
	OpRename    OpKind = "rename"
	OpMkdir     OpKind = "mkdir"
	OpRemove    OpKind = "remove"
	OpRemoveAll OpKind = "remove-all"
	OpWalk      OpKind = "walk"
	OpFreeSpace OpKind = "free-space"
)

// Op is one call of a Mem's method, recorded once it finished.
type Op struct {
	Kind    OpKind
	Path    string // for OpRename, the old path
	NewPath string // for OpRename
	Err     error  // what the call returned
}

// Mem is an in-memory [targets.Target] for tests. It enforces the contract
// as targets/sftp does: paths must pass safepath.CheckInternal (otherwise a
// permanent error), parents must exist, a missing file gives an error
// wrapping fs.ErrNotExist, a source shorter than its size a permanent error
// wrapping io.ErrUnexpectedEOF, and a closed Mem fails with
// targets.ErrClosed. It records every call in order ([Mem.Ops]) and can be
// told to fail or block through its function fields. It is safe for
// concurrent use; the function fields must be set before that starts.
//
// Symbolic links ([Mem.Symlink]) point at root-relative paths. Walk,
// Remove and RemoveAll never follow them; ReadFile and WriteFile follow a
// link in the last element of the path, as a server would.
type Mem struct {
	// Before, when set, runs before every operation, after the path checks,
	// with the operation about to run (Err unset). A non-nil error fails the
	// operation. It may block, honouring ctx, to simulate a slow or hung
	// server.
	Before func(ctx context.Context, op Op) error

	// FailRead, FailWrite, FailRename, FailMkdir, FailRemove (also for
	// RemoveAll) and FailWalk, when set, run after Before; a non-nil error
	// fails the operation before it changes anything. Mark an error with
	// targets.Permanent to simulate a fault no retry fixes.
	FailRead   func(path string) error
	FailWrite  func(path string) error
	FailRename func(oldpath, newpath string) error
	FailMkdir  func(dir string) error
	FailRemove func(path string) error
	FailWalk   func(dir string) error

	// FreeBytes is what FreeSpace reports; zero or less means unknown.
	FreeBytes int64

	name string

	mu     sync.Mutex
	nodes  map[string]*memNode // by root-relative path; "" is the root
	ops    []Op
	closed bool
}

type memNode struct {
	dir  bool
	link string // symbolic link target (root-relative); "" if not a link
	data []byte
	mod  time.Time
}

var (
	_ targets.Target        = (*Mem)(nil)
	_ targets.SpaceReporter = (*Mem)(nil)
	_ Symlinker             = (*Mem)(nil)
)

// NewMem returns an empty Mem named name.
func NewMem(name string) *Mem {
	return &Mem{name: name, nodes: map[string]*memNode{"": {dir: true, mod: time.Now()}}}
}

// Name returns the name given to NewMem.
func (m *Mem) Name() string { return m.name }

// Ops returns a copy of the operations recorded so far, in the order they
// took effect.
func (m *Mem) Ops() []Op {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ops)
}

// File returns the content of the regular file at p (links not followed).
func (m *Mem) File(p string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[p]
	if n == nil || n.dir || n.link != "" {
		return nil, false
	}
	return bytes.Clone(n.data), true
}

// Files returns a copy of every regular file, by path.
func (m *Mem) Files() map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte)
	for p, n := range m.nodes {
		if !n.dir && n.link == "" {
			out[p] = bytes.Clone(n.data)
		}
	}
	return out
}

// SetFile stores data at p, creating missing parent directories, without
// recording an operation or running fault hooks: it prepares a target's
// state for a test.
func (m *Mem) SetFile(p string, data []byte) error {
	if err := safepath.CheckInternal(p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mkdirAllLocked(parent(p)); err != nil {
		return err
	}
	if n := m.nodes[p]; n != nil && n.dir {
		return fmt.Errorf("set %s: %w", p, syscall.EISDIR)
	}
	m.nodes[p] = &memNode{data: bytes.Clone(data), mod: time.Now()}
	return nil
}

// Symlink creates the symbolic link newname pointing at oldname; both are
// root-relative. The parent of newname must exist and newname must not.
// It is neither recorded in Ops nor subject to the fault hooks.
func (m *Mem) Symlink(ctx context.Context, oldname, newname string) error {
	err := m.check(ctx, oldname, newname)
	if err == nil {
		m.mu.Lock()
		switch {
		case !m.isDir(parent(newname)):
			err = fs.ErrNotExist
		case m.nodes[newname] != nil:
			err = fs.ErrExist
		default:
			m.nodes[newname] = &memNode{link: oldname, mod: time.Now()}
		}
		m.mu.Unlock()
	}
	if err != nil {
		return m.opErr("symlink", newname, err)
	}
	return nil
}

// ReadFile returns a copy of the file at p.
func (m *Mem) ReadFile(ctx context.Context, p string) ([]byte, error) {
	op := Op{Kind: OpRead, Path: p}
	if err := m.begin(ctx, op, p); err != nil {
		return nil, m.finish(op, err)
	}
	if err := call1(m.FailRead, p); err != nil {
		return nil, m.finish(op, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, _, err := m.resolve(p)
	if err == nil && n == nil {
		err = fs.ErrNotExist
	}
	if err == nil && n.dir {
		err = syscall.EISDIR
	}
	if err != nil {
		return nil, m.finishLocked(op, err)
	}
	return bytes.Clone(n.data), m.finishLocked(op, nil)
}

// WriteFile reads exactly size bytes from r (never more) and stores them at
// p, replacing any file there. A short source stores what it gave and
// fails permanently.
func (m *Mem) WriteFile(ctx context.Context, p string, r io.Reader, size int64) error {
	op := Op{Kind: OpWrite, Path: p}
	if err := m.begin(ctx, op, p); err != nil {
		return m.finish(op, err)
	}
	if size < 0 {
		return m.finish(op, targets.Permanent(fmt.Errorf("negative size %d", size)))
	}
	if err := call1(m.FailWrite, p); err != nil {
		return m.finish(op, err)
	}
	var buf bytes.Buffer
	n, rerr := io.CopyN(&buf, r, size)
	switch {
	case errors.Is(rerr, io.EOF):
		rerr = targets.Permanent(fmt.Errorf("read source: source ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF))
	case rerr != nil:
		rerr = fmt.Errorf("read source: %w", rerr)
	}
	if rerr == nil {
		rerr = ctx.Err()
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.finishLocked(op, targets.Permanent(targets.ErrClosed))
	}
	_, target, err := m.resolve(p)
	switch {
	case err != nil:
	case !m.isDir(parent(target)):
		err = fs.ErrNotExist
	case m.nodes[target] != nil && m.nodes[target].dir:
		err = syscall.EISDIR
	}
	if err != nil {
		return m.finishLocked(op, err)
	}
	if errors.Is(rerr, io.ErrUnexpectedEOF) || rerr == nil {
		m.nodes[target] = &memNode{data: buf.Bytes(), mod: time.Now()}
	}
	return m.finishLocked(op, rerr)
}

// Rename moves oldpath (a file, link or directory) to newpath, replacing a
// file or link there.
func (m *Mem) Rename(ctx context.Context, oldpath, newpath string) error {
	op := Op{Kind: OpRename, Path: oldpath, NewPath: newpath}
	if err := m.begin(ctx, op, oldpath, newpath); err != nil {
		return m.finish(op, err)
	}
	if m.FailRename != nil {
		if err := m.FailRename(oldpath, newpath); err != nil {
			return m.finish(op, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	src, dst := m.nodes[oldpath], m.nodes[newpath]
	var err error
	switch {
	case src == nil || !m.isDir(parent(newpath)):
		err = fs.ErrNotExist
	case oldpath == newpath:
	case dst != nil && dst.dir && !src.dir:
		err = syscall.EISDIR
	case dst != nil && !dst.dir && src.dir:
		err = syscall.ENOTDIR
	case dst != nil && dst.dir && m.hasChildren(newpath):
		err = syscall.ENOTEMPTY
	case src.dir && strings.HasPrefix(newpath, oldpath+"/"):
		err = syscall.EINVAL
	default:
		m.nodes[newpath] = src
		delete(m.nodes, oldpath)
		if src.dir {
			for p, n := range m.nodes {
				if rest, ok := strings.CutPrefix(p, oldpath+"/"); ok {
					m.nodes[newpath+"/"+rest] = n
					delete(m.nodes, p)
				}
			}
		}
	}
	return m.finishLocked(op, err)
}

// beginDir starts an operation on a directory: "" and "." are the root
// (returned as ""), any other name is checked; then the fault hook runs.
func (m *Mem) beginDir(ctx context.Context, op Op, dir string, fail func(string) error) (string, error) {
	if dir == "." {
		dir = ""
	}
	var err error
	if dir == "" {
		err = m.begin(ctx, op)
	} else {
		err = m.begin(ctx, op, dir)
	}
	if err == nil {
		err = call1(fail, op.Path)
	}
	return dir, err
}

// MkdirAll creates dir and its missing parents; "" and "." are the root.
func (m *Mem) MkdirAll(ctx context.Context, dir string) error {
	op := Op{Kind: OpMkdir, Path: dir}
	dir, err := m.beginDir(ctx, op, dir, m.FailMkdir)
	if err != nil {
		return m.finish(op, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.finishLocked(op, m.mkdirAllLocked(dir))
}

func (m *Mem) mkdirAllLocked(dir string) error {
	if dir == "" {
		return nil
	}
	if err := m.mkdirAllLocked(parent(dir)); err != nil {
		return err
	}
	switch n := m.nodes[dir]; {
	case n == nil:
		m.nodes[dir] = &memNode{dir: true, mod: time.Now()}
	case !n.dir:
		return targets.Permanent(fmt.Errorf("%s exists and is not a directory: %w", dir, syscall.ENOTDIR))
	}
	return nil
}

// beginPath starts an operation on path p, then runs its fault hook.
func (m *Mem) beginPath(ctx context.Context, op Op, p string, fail func(string) error) error {
	if err := m.begin(ctx, op, p); err != nil {
		return err
	}
	return call1(fail, p)
}

// Remove deletes a file, link or empty directory; a missing path is not an
// error.
func (m *Mem) Remove(ctx context.Context, p string) error {
	op := Op{Kind: OpRemove, Path: p}
	if err := m.beginPath(ctx, op, p, m.FailRemove); err != nil {
		return m.finish(op, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[p]
	if n != nil && n.dir && m.hasChildren(p) {
		return m.finishLocked(op, syscall.ENOTEMPTY)
	}
	delete(m.nodes, p)
	return m.finishLocked(op, nil)
}

// RemoveAll deletes p and everything below it, without following links; a
// missing path is not an error.
func (m *Mem) RemoveAll(ctx context.Context, p string) error {
	op := Op{Kind: OpRemoveAll, Path: p}
	if err := m.beginPath(ctx, op, p, m.FailRemove); err != nil {
		return m.finish(op, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.nodes, p)
	for q := range m.nodes {
		if strings.HasPrefix(q, p+"/") {
			delete(m.nodes, q)
		}
	}
	return m.finishLocked(op, nil)
}

// Walk calls fn, in path order and without holding any lock, for every
// regular file and link below dir ("" or "." for the root). A missing dir
// gives an error wrapping fs.ErrNotExist; an error from fn is returned as
// is.
func (m *Mem) Walk(ctx context.Context, dir string, fn func(targets.FileInfo) error) error {
	op := Op{Kind: OpWalk, Path: dir}
	dir, err := m.beginDir(ctx, op, dir, m.FailWalk)
	if err != nil {
		return m.finish(op, err)
	}
	m.mu.Lock()
	var infos []targets.FileInfo
	add := func(p string, n *memNode) {
		if !n.dir {
			infos = append(infos, targets.FileInfo{Path: p, Size: int64(len(n.data)), ModTime: n.mod, Symlink: n.link != ""})
		}
	}
	root := m.nodes[dir]
	switch {
	case root == nil:
		err = fs.ErrNotExist
	case !root.dir:
		add(dir, root)
	default:
		for p, n := range m.nodes {
			if dir == "" && p != "" || strings.HasPrefix(p, dir+"/") {
				add(p, n)
			}
		}
	}
	err = m.finishLocked(op, err)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	slices.SortFunc(infos, func(a, b targets.FileInfo) int { return strings.Compare(a.Path, b.Path) })
	for _, fi := range infos {
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// FreeSpace reports FreeBytes, if positive.
func (m *Mem) FreeSpace(ctx context.Context) (int64, bool, error) {
	op := Op{Kind: OpFreeSpace}
	if err := m.begin(ctx, op); err != nil {
		return 0, false, m.finish(op, err)
	}
	return max(m.FreeBytes, 0), m.FreeBytes > 0, m.finish(op, nil)
}

// Close marks the Mem closed; later calls fail with targets.ErrClosed. The
// content stays readable through File and Files.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// begin checks, in order: closed, ctx, the paths, then runs Before.
func (m *Mem) begin(ctx context.Context, op Op, paths ...string) error {
	if err := m.check(ctx, paths...); err != nil {
		return err
	}
	if m.Before != nil {
		return m.Before(ctx, op)
	}
	return nil
}

// check fails on a closed Mem, an ended ctx or a path prepcast refuses.
func (m *Mem) check(ctx context.Context, paths ...string) error {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return targets.Permanent(targets.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, p := range paths {
		if err := safepath.CheckInternal(p); err != nil {
			return targets.Permanent(fmt.Errorf("refuse path: %w", err))
		}
	}
	return nil
}

func call1(f func(string) error, p string) error {
	if f == nil {
		return nil
	}
	return f(p)
}

// finish records op with its outcome and returns the error to give.
func (m *Mem) finish(op Op, err error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.finishLocked(op, err)
}

func (m *Mem) finishLocked(op Op, err error) error {
	desc := op.Path
	if op.Kind == OpRename {
		desc = op.Path + " to " + op.NewPath
	}
	if err != nil {
		err = m.opErr(string(op.Kind), desc, err)
	}
	op.Err = err
	m.ops = append(m.ops, op)
	return err
}

func (m *Mem) opErr(op, p string, err error) error {
	if p == "" {
		return fmt.Errorf("mem %s: %s: %w", m.name, op, err)
	}
	return fmt.Errorf("mem %s: %s %s: %w", m.name, op, p, err)
}

// resolve follows links in the last element of p (at most 8). It returns
// the node found (nil if none) and the path it lives at.
func (m *Mem) resolve(p string) (*memNode, string, error) {
	for range 8 {
		n := m.nodes[p]
		if n == nil || n.link == "" {
			return n, p, nil
		}
		if safepath.CheckInternal(n.link) != nil {
			return nil, "", fs.ErrNotExist
		}
		p = n.link
	}
	return nil, "", syscall.ELOOP
}

func (m *Mem) isDir(p string) bool {
	n := m.nodes[p]
	return n != nil && n.dir
}

func (m *Mem) hasChildren(dir string) bool {
	for p := range m.nodes {
		if strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// parent returns the root-relative parent of p ("" for the root).
func parent(p string) string {
	d := path.Dir(p)
	if d == "." {
		return ""
	}
	return d
}
