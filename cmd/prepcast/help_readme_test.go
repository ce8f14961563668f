package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// The README's command list is what "prepcast help" prints, so a command or
// flag added later shows up in both or the test fails.
func TestREADMEListsEveryCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"help"}, &out, &out); code != exitOK {
		t.Fatalf("help exited %d", code)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "  prepcast ") && !bytes.Contains(readme, []byte(line+"\n")) {
			t.Errorf("README's command list lacks %q (paste the output of \"prepcast help\")", strings.TrimSpace(line))
		}
	}
}
