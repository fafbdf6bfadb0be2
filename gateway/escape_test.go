package gateway

import (
	"encoding/xml"
	"strings"
	"testing"
	"unicode/utf8"
)

// xmlSafe is what appendEscaped promises a reader gets back: s with
// every character XML 1.0 cannot carry replaced by U+FFFD.
func xmlSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1, r == 0xFFFE, r == 0xFFFF, r < ' ' && r != '\t' && r != '\n' && r != '\r':
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func checkEscapeRoundTrip(t *testing.T, s string) {
	t.Helper()
	esc := escape(s)
	if string(appendEscaped(nil, []byte(s))) != string(appendEscaped(nil, s)) || string(appendEscaped(nil, s)) != esc {
		t.Fatalf("escape forms differ for %q", s)
	}
	var v struct {
		Text string `xml:",chardata"`
	}
	if err := xml.Unmarshal([]byte("<a>"+esc+"</a>"), &v); err != nil {
		t.Fatalf("escape(%q) = %q: not well-formed: %v", s, esc, err)
	}
	if want := xmlSafe(s); v.Text != want {
		t.Fatalf("escape(%q) = %q reads back as %q, want %q", s, esc, v.Text, want)
	}
}

func TestEscape(t *testing.T) {
	for _, s := range []string{
		"", "plain", "a & b < c > d \"e\" 'f'", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "tab\there",
		"nul\x00 bell\x07 esc\x1b", "bad utf8 \xff\xfe and \xc3", "\uFFFE\uFFFF", "日本語 ✓ 🎉", "]]>", "\r\r\n\n",
	} {
		checkEscapeRoundTrip(t, s)
	}
	if s := "nothing to escape: ünïcode"; escape(s) != s {
		t.Errorf("escape changed %q", s)
	}
}

func FuzzEscape(f *testing.F) {
	f.Add("BEGIN:VEVENT\r\nSUMMARY:a & b\r\n")
	f.Add("\xff\x00<\r")
	f.Fuzz(checkEscapeRoundTrip)
}
