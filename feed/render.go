package feed

import (
	"bytes"
	"unicode/utf8"

	"github.com/calgate/calgate/ical"
)

// maxLine is the longest content line RFC 5545 §3.1 allows, in octets
// without the line end.
const maxLine = 75

// nextLine splits the first logical line off data.
func nextLine(data []byte) (line, rest []byte) {
	end := ical.LogicalLineEnd(data)
	return data[:end], data[end:]
}

// unfolded returns line without its final line end and with its folds
// removed. It allocates only for a folded line.
func unfolded(line []byte) []byte {
	line = trimEOL(line)
	if bytes.IndexByte(line, '\n') < 0 {
		return line
	}
	return ical.Unfold(line)
}

// trimEOL removes one trailing LF or CRLF.
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// blank reports whether a line holds only white space (stored objects
// sometimes have empty lines between components; strict readers refuse
// them).
func blank(line []byte) bool {
	return len(bytes.TrimSpace(line)) == 0
}

// lineName returns the property or BEGIN/END name of a logical line: the
// text before the first ';' or ':', with surrounding white space removed.
func lineName(line []byte) []byte {
	for i, c := range line {
		if c == ';' || c == ':' {
			return bytes.TrimSpace(line[:i])
		}
		if c == '\n' {
			break
		}
	}
	// The name itself is folded (rare): unfold the whole line.
	u := unfolded(line)
	if i := bytes.IndexAny(u, ";:"); i >= 0 {
		return bytes.TrimSpace(u[:i])
	}
	return bytes.TrimSpace(u)
}

// splitProp splits an unfolded content line into its name, its
// parameters (starting with ';', or empty) and its value. A ':' inside a
// double-quoted parameter value does not end the parameters. ok is false
// for a line without a value colon.
func splitProp(u []byte) (name, params, value []byte, ok bool) {
	i := bytes.IndexAny(u, ";:")
	if i < 0 {
		return nil, nil, nil, false
	}
	name = u[:i]
	quoted := false
	for j := i; j < len(u); j++ {
		switch u[j] {
		case '"':
			quoted = !quoted
		case ':':
			if !quoted {
				return name, u[i:j], u[j+1:], true
			}
		}
	}
	return nil, nil, nil, false
}

// eachParam calls fn with the name and raw value (quotes kept) of every
// parameter in params (as splitProp returns them).
func eachParam(params []byte, fn func(name, value []byte)) {
	for len(params) > 0 && params[0] == ';' {
		params = params[1:]
		j, quoted := 0, false
		for ; j < len(params); j++ {
			c := params[j]
			if c == '"' {
				quoted = !quoted
			} else if !quoted && c == ';' {
				break
			}
		}
		seg := params[:j]
		params = params[j:]
		if k, v, found := bytes.Cut(seg, []byte("=")); found {
			fn(bytes.TrimSpace(k), v)
		}
	}
}

// lineValue returns the value of a logical line (after the value colon),
// trimmed of white space.
func lineValue(line []byte) []byte {
	_, _, v, _ := splitProp(unfolded(line))
	return bytes.TrimSpace(v)
}

// appendLine appends one logical line of a stored object to b with CRLF
// line ends. A line whose physical lines are all at most 75 octets and
// valid UTF-8 on their own is copied as it is; any other is unfolded and
// folded again with ical.FoldLine, which never splits a UTF-8 sequence.
func appendLine(b, line []byte) []byte {
	if foldedWell(line) {
		for len(line) > 0 {
			i := bytes.IndexByte(line, '\n')
			if i < 0 {
				b = append(b, line...)
				return append(b, '\r', '\n')
			}
			b = append(b, bytes.TrimSuffix(line[:i], []byte("\r"))...)
			b = append(b, '\r', '\n')
			line = line[i+1:]
		}
		return b
	}
	return ical.FoldLine(b, string(unfolded(line)))
}

// foldedWell reports whether every physical line of a logical line is at
// most maxLine octets and valid UTF-8 by itself.
func foldedWell(line []byte) bool {
	for len(line) > 0 {
		seg := line
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			seg, line = line[:i], line[i+1:]
		} else {
			line = nil
		}
		seg = bytes.TrimSuffix(seg, []byte("\r"))
		if len(seg) > maxLine || !validUTF8(seg) {
			return false
		}
	}
	return true
}

// validUTF8 is utf8.Valid with a fast path for ASCII.
func validUTF8(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

// hasFold reports whether b contains s, ignoring ASCII case; s must be
// upper case.
func hasFold(b []byte, s string) bool {
	n := len(s)
	for i := 0; i+n <= len(b); i++ {
		c := b[i]
		if c|0x20 != s[0]|0x20 {
			continue
		}
		if bytes.EqualFold(b[i:i+n], []byte(s)) {
			return true
		}
	}
	return false
}

// isName reports whether name equals want (upper case), ignoring case.
func isName(name []byte, want string) bool {
	return len(name) == len(want) && bytes.EqualFold(name, []byte(want))
}
