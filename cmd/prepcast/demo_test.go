package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
)

// TestMain lets tests run the prepcast command itself as a child process.
func TestMain(m *testing.M) {
	if os.Getenv("PREPCAST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// The demo, run as a command: it exits 0, every difusor acknowledges the
// last cut according to its own ack.json, and every kept webroot holds that
// cut byte for byte.
func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	cmd := exec.Command(os.Args[0], "demo", "--cuts", "4", "--speed", "max", "--difusores", "3", "--scale", "0.01", "--keep")
	cmd.Env = append(os.Environ(), "PREPCAST_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("prepcast demo: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`kept: webroots in (\S+), store and state in (\S+),`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("demo did not say where it kept its files:\n%s", out)
	}
	webroots, stateDir := string(m[1]), string(m[2])
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(webroots)) })
	store, err := packager.OpenStore(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := store.Latest()
	if err != nil || latest == nil || latest.Seq != 4 {
		t.Fatalf("latest cut %+v, %v; want cut 4", latest, err)
	}
	man, mb, err := store.Manifest(latest.Seq)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"difusor-1", "difusor-2", "difusor-3"} {
		root := filepath.Join(webroots, name, "www")
		data, err := os.ReadFile(filepath.Join(root, ".prepcast", "ack.json"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ack, err := publisher.ParseAck(data)
		if err != nil || ack.Seq != 4 || ack.Manifest != packager.Hash(mb) {
			t.Fatalf("%s: ack %+v (%v), want cut 4", name, ack, err)
		}
		if err := verifyWebroot(root, man); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}
