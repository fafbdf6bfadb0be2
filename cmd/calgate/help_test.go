package main

import (
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"
)

// TestHelp checks, for every subcommand, that `calgate help NAME` and
// `calgate NAME -h` print its complete help, that the help names each
// flag the subcommand accepts and has a paste-able example, and that
// `calgate --help` lists every subcommand with a line each.
func TestHelp(t *testing.T) {
	want := []string{"serve", "check-config", "hash-password", "import", "export", "sync", "status", "backup", "compact", "restore", "help"}
	code, overview, _ := runCLI(t, "", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, name := range want {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` +\S.*$`).MatchString(overview) {
			t.Errorf("--help has no line for %s:\n%s", name, overview)
		}
		if !strings.Contains(overview, "\n  calgate "+name) && name != "help" {
			t.Errorf("--help has no example of %s", name)
		}
	}
	if len(commands) != len(want) {
		t.Errorf("%d subcommands, the test knows %d", len(commands), len(want))
	}

	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", "help", c.name)
			if code != 0 || out != c.help || errOut != "" {
				t.Errorf("help %s: exit %d, stderr %q, stdout is the help: %v", c.name, code, errOut, out == c.help)
			}
			if !strings.HasPrefix(c.help, "Usage: calgate ") || !strings.Contains(strings.SplitN(c.help, "\n", 2)[0], c.name) {
				t.Errorf("help of %s does not start with its synopsis: %q", c.name, strings.SplitN(c.help, "\n", 2)[0])
			}
			if !regexp.MustCompile(`(?m)^Examples:\n  calgate `).MatchString(c.help) {
				t.Errorf("help of %s has no examples", c.name)
			}
			if c.name != "help" {
				for _, h := range []string{"-h", "--help"} {
					code, out, errOut := runCLI(t, "", c.name, h)
					if code != 0 || out != c.help {
						t.Errorf("%s %s: exit %d, stderr %q, stdout is the help: %v", c.name, h, code, errOut, out == c.help)
					}
				}
				fs := flagSet(c, &cliFlags{}, io.Discard, io.Discard)
				n := 0
				fs.VisitAll(func(f *flag.Flag) {
					n++
					if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f.Name) + `\b`).MatchString(c.help) {
						t.Errorf("help of %s does not describe its flag -%s", c.name, f.Name)
					}
				})
				if n < 2 {
					t.Errorf("%s takes %d flags; every subcommand takes -log-level and -log-format", c.name, n)
				}
			}
		})
	}

	code, out, errOut := runCLI(t, "", "frobnicate")
	if code != 2 || out != "" || !strings.Contains(errOut, `unknown subcommand "frobnicate"`) || !strings.Contains(errOut, "  backup ") {
		t.Errorf("unknown subcommand: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "", "help", "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown subcommand "frobnicate"`) {
		t.Errorf("help of an unknown subcommand: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "", "status", "-nope")
	if code != 2 || !strings.Contains(errOut, "flag provided but not defined: -nope") || !strings.Contains(errOut, "calgate help status") {
		t.Errorf("bad flag: exit %d, stderr %q", code, errOut)
	}
}
