package publisher

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// Package mode with "prepcast apply" on the other end is tested in package
// apply, which runs both ends.

// flipByte alters the byte at off of a (read-only) file in place.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPackageModeNeedsCommander(t *testing.T) {
	f := newFixture(t)
	f.cut()
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: targettest.NewMem("plain"), Apply: "apply"}})[0]
	if r.Err == nil || !targets.IsPermanent(r.Err) || !strings.Contains(r.Err.Error(), "mode: sftp") {
		t.Fatalf("err = %v", r.Err)
	}
}
