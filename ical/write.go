package ical

import (
	"sort"
	"strings"

	goical "github.com/emersion/go-ical"
)

// propOrder puts the properties readers look for first in a written
// component; the rest follow by name.
var propOrder = map[string]int{
	"UID": 1, "DTSTAMP": 2, "RECURRENCE-ID": 3, "DTSTART": 4, "DTEND": 5, "DUE": 6, "DURATION": 7,
	"SUMMARY": 8, "STATUS": 9, "SEQUENCE": 10,
}

// AppendComponent writes c (and its sub-components) to b as content lines
// folded at 75 octets, CRLF-ended. It is used only for components calgate
// synthesises (expanded instances); stored objects are served as received.
func AppendComponent(b []byte, c *goical.Component) []byte {
	b = append(b, "BEGIN:"+c.Name+"\r\n"...)
	names := make([]string, 0, len(c.Props))
	for n := range c.Props {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		oi, oj := propOrder[names[i]], propOrder[names[j]]
		if oi == 0 {
			oi = 100
		}
		if oj == 0 {
			oj = 100
		}
		if oi != oj {
			return oi < oj
		}
		return names[i] < names[j]
	})
	for _, n := range names {
		for _, p := range c.Props[n] {
			b = FoldLine(b, contentLine(&p))
		}
	}
	for _, child := range c.Children {
		b = AppendComponent(b, child)
	}
	return append(b, "END:"+c.Name+"\r\n"...)
}

// contentLine renders one property as an unfolded content line.
func contentLine(p *goical.Prop) string {
	var sb strings.Builder
	sb.WriteString(p.Name)
	keys := make([]string, 0, len(p.Params))
	for k := range p.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sb.WriteString(";" + k + "=")
		for i, v := range p.Params[k] {
			if i > 0 {
				sb.WriteByte(',')
			}
			if strings.ContainsAny(v, ":;,") {
				sb.WriteString(`"` + strings.ReplaceAll(v, `"`, "") + `"`)
			} else {
				sb.WriteString(v)
			}
		}
	}
	sb.WriteByte(':')
	sb.WriteString(p.Value)
	return sb.String()
}
