package main

import (
	"strings"
	"testing"
)

// TestConfigAccountMembers checks that a merge or feed member that names
// a calendar of an account is an id such a calendar can have: the account
// id, '-' and a name of the characters ids are made of. Before, any id
// that started with "<account id>-" passed, so a member written with the
// upstream display name validated and then never matched a calendar.
func TestConfigAccountMembers(t *testing.T) {
	t.Setenv("CALGATE_TEST_PASSWORD", "s3cret")
	t.Setenv("CALGATE_TEST_TOKENS", "0123456789abcdef0123")
	config := func(member string) string {
		return `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: all
        merge: {calendars: ["` + member + `"]}
    accounts:
      - id: team
        caldav: {url: "https://dav.example.com/", username: alice, password_env: CALGATE_TEST_PASSWORD}
feeds:
  - name: team
    calendars: ["alice/` + member + `"]
    tokens_env: CALGATE_TEST_TOKENS
`
	}
	for _, member := range []string{"team-work", "team-Work_2.x", "team--"} {
		if _, err := parseAndValidate(t, config(member)); err != nil {
			t.Errorf("member %q: %v", member, err)
		}
	}
	for _, member := range []string{"team-", "team-My Calendar", "team-x/y", "team-é", "teamwork"} {
		_, err := parseAndValidate(t, config(member))
		if err == nil {
			t.Errorf("member %q validates", member)
			continue
		}
		for _, want := range []string{`merge: unknown calendar "` + member + `"`, `unknown calendar "alice/` + member + `"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("member %q: error %q does not contain %q", member, err, want)
			}
		}
	}
}
