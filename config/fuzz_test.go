package config_test

import (
	"os"
	"testing"

	"github.com/prepcast/prepcast/config"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// either a syntax error or names its fields, and that a config it accepts
// passes Validate.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("../prepcast.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add(render(baseTop, baseTarget))
	for _, s := range []string{
		"",
		"~",
		"- a\n- b\n",
		"source: [\n",
		"source: /s\n---\nsource: /t\n",
		"targets:\n  - &a {name: x, <<: *a}\n",
		"targets:\n  -\n  - just-a-name\n  - {name: a, name: b}\n",
		"schedule: &s {every: *s}\n",
		"pointer: {a: b}\nlimits: {uplink: 1e400Gbit/s}\n",
		"targets: [{name: a, address: '[fe80::1%eth0]', user: u, host_key: 'ssh-ed25519 AAAA', root: /r}]\n",
		"source: /\nstate_dir: /\nsigning_key: /\nlog: {file: /}\n",
		"zone: ../../../../etc/passwd\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "/etc/prepcast")
		if err != nil {
			if c != nil {
				t.Errorf("Parse returned a config and an error")
			}
			if err.Error() == "" {
				t.Errorf("empty error message")
			}
			for _, fe := range config.FieldErrors(err) {
				if fe.Field == "" || fe.Msg == "" {
					t.Errorf("field error without field or message: %q", fe.Error())
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Parse accepted a config that Validate refuses: %v\ninput:\n%s", err, data)
		}
	})
}
