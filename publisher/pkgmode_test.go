package publisher

import (
	"context"
	"strings"
	"testing"

	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// Package mode with "prepcast apply" on the other end is tested in package
// apply, which runs both ends.

func TestPackageModeNeedsCommander(t *testing.T) {
	f := newFixture(t)
	f.Cut()
	r := f.engine().Push(context.Background(), []TargetSpec{{Target: targettest.NewMem("plain"), Apply: "apply"}})[0]
	if r.Err == nil || !targets.IsPermanent(r.Err) || !strings.Contains(r.Err.Error(), "mode: sftp") {
		t.Fatalf("err = %v", r.Err)
	}
}
