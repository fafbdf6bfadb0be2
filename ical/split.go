package ical

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// RawComponent is one top-level component of a VCALENDAR, as the bytes it
// was written with (folded lines kept, line ends normalised to CRLF).
type RawComponent struct {
	Name string // upper case: VEVENT, VTIMEZONE, ...
	TZID string // for a VTIMEZONE
	Data []byte
}

// SplitRaw returns the top-level components of every VCALENDAR in data
// without decoding or re-encoding them.
func SplitRaw(data []byte) []RawComponent {
	data = bytes.TrimPrefix(data, bom)
	var (
		out   []RawComponent
		cur   *RawComponent
		depth int
	)
	for len(data) > 0 {
		end := LogicalLineEnd(data)
		line := data[:end]
		data = data[end:]
		name, value := lineNameValue(line)
		switch name {
		case "BEGIN":
			depth++
			if depth == 2 {
				cur = &RawComponent{Name: strings.ToUpper(value)}
			}
		case "TZID":
			if depth == 2 && cur != nil && cur.Name == "VTIMEZONE" && cur.TZID == "" {
				cur.TZID = value
			}
		}
		if depth >= 2 && cur != nil {
			cur.Data = appendCRLF(cur.Data, line)
		}
		if name == "END" {
			if depth == 2 && cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			if depth > 0 {
				depth--
			}
		}
	}
	return out
}

// lineNameValue returns the upper-cased name and the value of an
// (unfolded) content line, ignoring parameters.
func lineNameValue(line []byte) (string, string) {
	l := string(Unfold(bytes.TrimRight(line, "\r\n")))
	i := strings.IndexAny(l, ";:")
	if i < 0 {
		return "", ""
	}
	name := strings.ToUpper(strings.TrimSpace(l[:i]))
	value := ""
	if j := strings.IndexByte(l[i:], ':'); j >= 0 {
		value = strings.TrimSpace(l[i+j+1:])
	}
	return name, value
}

// appendCRLF appends line to b with every line end written as CRLF.
func appendCRLF(b, line []byte) []byte {
	for len(line) > 0 {
		i := bytes.IndexByte(line, '\n')
		if i < 0 {
			b = append(b, line...)
			return append(b, '\r', '\n')
		}
		seg := bytes.TrimSuffix(line[:i], []byte("\r"))
		b = append(b, seg...)
		b = append(b, '\r', '\n')
		line = line[i+1:]
	}
	return b
}

// FoldLine writes one content line to b, folded at 75 octets without
// splitting a UTF-8 sequence, ended by CRLF (RFC 5545 §3.1).
func FoldLine(b []byte, line string) []byte {
	const max = 75
	n := 0
	for len(line) > 0 {
		_, size := utf8.DecodeRuneInString(line)
		if n+size > max {
			b = append(b, '\r', '\n', ' ')
			n = 1
		}
		b = append(b, line[:size]...)
		n += size
		line = line[size:]
	}
	return append(b, '\r', '\n')
}

// EscapeText escapes a TEXT value (RFC 5545 §3.3.11).
func EscapeText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\r\n", `\n`, "\n", `\n`)
	return r.Replace(s)
}

// FilterComponents returns data with only the top-level components of
// its VCALENDAR for which keep(i, name) is true, i counting them in
// document order from 0 (the order of the parsed calendar's Children).
// The VCALENDAR's own lines and every kept component are the original
// bytes (line ends normalised to CRLF).
func FilterComponents(data []byte, keep func(i int, name string) bool) []byte {
	data = bytes.TrimPrefix(data, bom)
	out := make([]byte, 0, len(data))
	depth, i, keeping := 0, -1, true
	for len(data) > 0 {
		end := LogicalLineEnd(data)
		line := data[:end]
		data = data[end:]
		name, value := lineNameValue(line)
		if name == "BEGIN" {
			depth++
			if depth == 2 {
				i++
				keeping = keep(i, strings.ToUpper(value))
			}
		}
		if depth <= 1 || keeping {
			out = appendCRLF(out, line)
		}
		if name == "END" && depth > 0 {
			depth--
		}
	}
	return out
}
