package targettest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/targets"
)

func TestMemConformance(t *testing.T) {
	Run(t, func(t *testing.T) targets.Target { return NewMem("mem") })
}

func TestMemRecordsOperationsInOrder(t *testing.T) {
	ctx := t.Context()
	m := NewMem("m")
	steps := []func() error{
		func() error { return m.MkdirAll(ctx, "json") },
		func() error { return m.WriteFile(ctx, "json/main.json.tmp", strings.NewReader("{}"), 2) },
		func() error { return m.Rename(ctx, "json/main.json.tmp", "json/main.json") },
		func() error { _, err := m.ReadFile(ctx, "missing"); return err },
	}
	for _, s := range steps {
		_ = s()
	}
	ops := m.Ops()
	var kinds []OpKind
	for _, op := range ops {
		kinds = append(kinds, op.Kind)
	}
	if want := []OpKind{OpMkdir, OpWrite, OpRename, OpRead}; !slices.Equal(kinds, want) {
		t.Fatalf("Ops kinds = %v, want %v", kinds, want)
	}
	if op := ops[2]; op.Path != "json/main.json.tmp" || op.NewPath != "json/main.json" || op.Err != nil {
		t.Errorf("rename recorded as %+v", op)
	}
	if ops[3].Err == nil {
		t.Error("failed read recorded without its error")
	}
	if got, ok := m.File("json/main.json"); !ok || string(got) != "{}" {
		t.Errorf("File(json/main.json) = %q, %v", got, ok)
	}
}

func TestMemFaultInjection(t *testing.T) {
	ctx := t.Context()
	errBoom := errors.New("boom")
	failOn := func(want string) func(string) error {
		return func(p string) error {
			if p == want {
				return errBoom
			}
			return nil
		}
	}
	tests := []struct {
		name  string
		setup func(m *Mem)
		op    func(m *Mem) error
	}{
		{"write", func(m *Mem) { m.FailWrite = failOn("a") }, func(m *Mem) error {
			return m.WriteFile(ctx, "a", strings.NewReader("x"), 1)
		}},
		{"read", func(m *Mem) { m.FailRead = failOn("f") }, func(m *Mem) error { _, err := m.ReadFile(ctx, "f"); return err }},
		{"rename", func(m *Mem) {
			m.FailRename = func(o, n string) error { return targets.Permanent(errBoom) }
		}, func(m *Mem) error { return m.Rename(ctx, "f", "g") }},
		{"mkdir", func(m *Mem) { m.FailMkdir = failOn("d") }, func(m *Mem) error { return m.MkdirAll(ctx, "d") }},
		{"remove", func(m *Mem) { m.FailRemove = failOn("f") }, func(m *Mem) error { return m.Remove(ctx, "f") }},
		{"remove-all", func(m *Mem) { m.FailRemove = failOn("f") }, func(m *Mem) error { return m.RemoveAll(ctx, "f") }},
		{"walk", func(m *Mem) { m.FailWalk = failOn(".") }, func(m *Mem) error {
			return m.Walk(ctx, ".", func(targets.FileInfo) error { return nil })
		}},
		{"before", func(m *Mem) {
			m.Before = func(_ context.Context, op Op) error {
				if op.Kind == OpWrite {
					return errBoom
				}
				return nil
			}
		}, func(m *Mem) error { return m.WriteFile(ctx, "a", strings.NewReader("x"), 1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMem("m")
			if err := m.SetFile("f", []byte("content")); err != nil {
				t.Fatal(err)
			}
			tc.setup(m)
			if err := tc.op(m); !errors.Is(err, errBoom) {
				t.Fatalf("error = %v, want the injected one", err)
			}
			files := m.Files()
			if len(files) != 1 || string(files["f"]) != "content" {
				t.Errorf("a failed operation changed the files: %q", files)
			}
		})
	}
}

func TestMemBeforeCanBlockUntilCancelled(t *testing.T) {
	m := NewMem("m")
	m.Before = func(ctx context.Context, op Op) error {
		<-ctx.Done()
		return ctx.Err()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.ReadFile(ctx, "f"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the context's", err)
	}
}

func TestMemFreeSpace(t *testing.T) {
	m := NewMem("m")
	if _, ok, err := m.FreeSpace(t.Context()); ok || err != nil {
		t.Errorf("FreeSpace without FreeBytes = ok %v, err %v; want unknown", ok, err)
	}
	m.FreeBytes = 1 << 30
	if free, ok, err := m.FreeSpace(t.Context()); free != 1<<30 || !ok || err != nil {
		t.Errorf("FreeSpace = %d, %v, %v; want %d, true, nil", free, ok, err, 1<<30)
	}
}

func TestDropExtension(t *testing.T) {
	pair := func(name, data string) []byte {
		b := appendString(nil, name)
		return appendString(b, data)
	}
	body := []byte{2, 0, 0, 0, 3}
	body = append(body, pair("hardlink@openssh.com", "1")...)
	body = append(body, pair("posix-rename@openssh.com", "1")...)
	body = append(body, pair("statvfs@openssh.com", "2")...)
	pkt := appendUint32(nil, uint32(len(body)))
	pkt = append(pkt, body...)

	want := []byte{2, 0, 0, 0, 3}
	want = append(want, pair("hardlink@openssh.com", "1")...)
	want = append(want, pair("statvfs@openssh.com", "2")...)
	want = append(appendUint32(nil, uint32(len(want))), want...)

	if got := dropExtension(pkt, "posix-rename@openssh.com"); string(got) != string(want) {
		t.Errorf("dropExtension = %q, want %q", got, want)
	}
	other := append(appendUint32(nil, 5), 101, 0, 0, 0, 1)
	if got := dropExtension(other, "posix-rename@openssh.com"); string(got) != string(other) {
		t.Errorf("dropExtension changed a non-version packet: %q", got)
	}
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(b []byte, s string) []byte {
	return append(appendUint32(b, uint32(len(s))), s...)
}
