package config

import (
	"fmt"
	"regexp"
	"strings"
)

// flowURLWithQuery matches an unquoted URL with a query ("?...") as an item
// of a YAML flow list: `[tls://10.0.0.5:443?proxy=v2]`. In flow context
// yaml.v3 reads "?" as the mapping-key indicator and fails with "did not
// find expected ',' or ']'", which says nothing about the cause.
var flowURLWithQuery = regexp.MustCompile(`[\[,]\s*([A-Za-z][A-Za-z0-9+.-]*://[^\s,\[\]{}"'#]*\?[^\s,\[\]{}"'#]*)`)

// syntaxHint explains a YAML syntax error portier's users run into, and
// returns the line it is about (1-based; 0 to keep the parser's). line is
// the line the error was reported at, or 0.
func syntaxHint(lines []string, line int, msg string) (hint string, at int) {
	if !strings.Contains(msg, "did not find expected ','") {
		return "", 0
	}
	find := func(i int) string {
		if i < 0 || i >= len(lines) {
			return ""
		}
		if m := flowURLWithQuery.FindStringSubmatch(stripComment(lines[i])); m != nil {
			return m[1]
		}
		return ""
	}
	// The reported line first; yaml.v3 reports no line (or the line
	// the enclosing block starts) for this error, so then the whole file.
	at = line
	u := find(line - 1)
	for i := 0; u == "" && i < len(lines); i++ {
		if u = find(i); u != "" {
			at = i + 1
		}
	}
	if u == "" {
		return "", 0
	}
	return fmt.Sprintf(`a URL with "?" inside [...] must be quoted: write [%q] (or list it as "- %s" on its own line)`, u, u), at
}

// stripComment cuts a "#" comment that starts a word (YAML's rule), so a
// commented-out line cannot be blamed.
func stripComment(s string) string {
	if strings.HasPrefix(strings.TrimSpace(s), "#") {
		return ""
	}
	if i := strings.Index(s, " #"); i >= 0 {
		return s[:i]
	}
	return s
}
