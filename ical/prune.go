package ical

import (
	"bytes"
	"strings"
)

// PruneSpec selects the parts of calendar data a client asked for with
// CALDAV:comp, CALDAV:prop and CALDAV:allprop/allcomp (RFC 4791 §9.6.1).
// A nil *PruneSpec keeps everything.
type PruneSpec struct {
	Name    string                // component name, upper case
	AllProp bool                  // keep every property
	Props   map[string]bool       // property names to keep (upper case)
	AllComp bool                  // keep every sub-component whole
	Comps   map[string]*PruneSpec // sub-components to keep, each pruned by its spec
}

// Prune returns data with only the components and properties spec
// selects. It works on content lines, so what it keeps is the original
// bytes (line ends normalised to CRLF). A BEGIN/END pair of a kept
// component is always kept.
func Prune(data []byte, spec *PruneSpec) []byte {
	if spec == nil {
		return data
	}
	data = bytes.TrimPrefix(data, bom)
	out := make([]byte, 0, len(data))
	// stack[i] is the spec of the component at depth i+1; nil with
	// keepAll[i] means "inside a component kept whole".
	var stack []*PruneSpec
	var keepAll []bool
	dropDepth := 0 // >0: inside a dropped component, at this depth
	for len(data) > 0 {
		end := LogicalLineEnd(data)
		line := data[:end]
		data = data[end:]
		name, value := lineNameValue(line)
		depth := len(stack)
		switch {
		case dropDepth > 0:
			switch name {
			case "BEGIN":
				dropDepth++
			case "END":
				dropDepth--
			}
			continue
		case name == "BEGIN":
			comp := strings.ToUpper(value)
			if depth == 0 {
				if comp != spec.Name {
					dropDepth = 1
					continue
				}
				stack, keepAll = append(stack, spec), append(keepAll, false)
				out = appendCRLF(out, line)
				continue
			}
			parent, all := stack[depth-1], keepAll[depth-1]
			switch {
			case all || parent.AllComp:
				stack, keepAll = append(stack, nil), append(keepAll, true)
			case parent.Comps[comp] != nil:
				stack, keepAll = append(stack, parent.Comps[comp]), append(keepAll, false)
			default:
				dropDepth = 1
				continue
			}
			out = appendCRLF(out, line)
		case name == "END":
			if depth > 0 {
				stack, keepAll = stack[:depth-1], keepAll[:depth-1]
			}
			out = appendCRLF(out, line)
		default:
			if depth == 0 {
				continue
			}
			cur, all := stack[depth-1], keepAll[depth-1]
			if all || cur.AllProp || cur.Props[name] {
				out = appendCRLF(out, line)
			}
		}
	}
	return out
}

// LogicalLineEnd returns the length of the first content line of data:
// a physical line with its line end and its continuation lines.
func LogicalLineEnd(data []byte) int {
	end := 0
	for {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			return len(data)
		}
		end += i + 1
		if end >= len(data) || (data[end] != ' ' && data[end] != '\t') {
			return end
		}
	}
}
