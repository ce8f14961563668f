package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/targets"
)

var _ targets.Commander = (*Target)(nil)

// stderrKeep is how much of a command's standard error is kept for errors.
const stderrKeep = 4 << 10

// Command starts cmd on the server in a new session of the target's SSH
// connection (connecting first if needed). Opening the session is bounded
// by the operation timeout; the command itself runs until it exits, ctx is
// done or the process is closed.
func (t *Target) Command(ctx context.Context, cmd string) (targets.Process, error) {
	c, err := t.getConn(ctx)
	if err != nil {
		return nil, err
	}
	type opened struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := c.ssh.NewSession()
		ch <- opened{s, err}
	}()
	var sess *ssh.Session
	select {
	case o := <-ch:
		if o.err != nil {
			return nil, t.opErr("start command", "", fmt.Errorf("open session: %w", o.err))
		}
		sess = o.s
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.s != nil {
				_ = o.s.Close()
			}
		}()
		return nil, ctx.Err()
	case <-c.dead:
		return nil, t.opErr("start command", "", c.cause())
	}
	p := &process{t: t, c: c, s: sess, cmd: cmd, done: make(chan struct{})}
	if p.stdin, err = sess.StdinPipe(); err == nil {
		p.stdout, err = sess.StdoutPipe()
	}
	if err != nil {
		_ = sess.Close()
		return nil, t.opErr("start command", "", err)
	}
	sess.Stderr = &p.stderr
	if err := sess.Start(cmd); err != nil {
		_ = sess.Close()
		return nil, t.opErr("start command", "", fmt.Errorf("%q: %w (does the server allow commands for this user, or only SFTP?)", cmd, err))
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = sess.Close()
		case <-c.dead:
			_ = sess.Close()
		case <-p.done:
		}
	}()
	return p, nil
}

// process is a command running in an SSH session.
type process struct {
	t      *Target
	c      *conn
	s      *ssh.Session
	cmd    string
	stdin  io.WriteCloser
	stdout io.Reader
	stderr tailBuffer

	waitOnce sync.Once
	waitErr  error
	done     chan struct{}
}

func (p *process) Stdin() io.WriteCloser { return p.stdin }
func (p *process) Stdout() io.Reader     { return p.stdout }

func (p *process) Wait() error {
	p.waitOnce.Do(func() {
		err := p.s.Wait()
		// The command may have made or removed directories.
		p.c.forgetAllDirs()
		close(p.done)
		p.waitErr = p.exitError(err)
	})
	return p.waitErr
}

func (p *process) Close() error {
	err := p.s.Close()
	p.c.forgetAllDirs()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// exitError describes how the command ended, with the end of its standard
// error.
func (p *process) exitError(err error) error {
	if err == nil {
		return nil
	}
	tail := p.stderr.String()
	if tail != "" {
		tail = ": " + tail
	}
	var ee *ssh.ExitError
	var me *ssh.ExitMissingError
	switch {
	case errors.As(err, &ee) && ee.ExitStatus() == 127:
		return targets.Permanent(p.t.opErr("run", "", fmt.Errorf("%q: command not found on the server (install prepcast on the difusor, or set the target's apply_command to its full path)%s", p.cmd, tail)))
	case errors.As(err, &ee):
		return p.t.opErr("run", "", fmt.Errorf("%q exited with status %d%s", p.cmd, ee.ExitStatus(), tail))
	case errors.As(err, &me):
		return p.t.opErr("run", "", fmt.Errorf("%q: the connection ended before the command did%s", p.cmd, tail))
	}
	return p.t.opErr("run", "", fmt.Errorf("%q: %w%s", p.cmd, err, tail))
}

// tailBuffer keeps the last stderrKeep bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - stderrKeep; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept text on one line.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return termsafe.Clip(strings.Join(strings.Fields(strings.ToValidUTF8(string(b.buf), "?")), " "), 0)
}
