package knocker

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseKnockBody(t *testing.T) {
	const js = "application/json"
	for _, tc := range []struct {
		name, ctype, body string
		status            int // 0 = accepted
		msg               string
		want              knockRequest
	}{
		{name: "empty body, any type", ctype: "text/plain", body: ""},
		{name: "empty object", ctype: js, body: "{}"},
		{name: "charset param", ctype: "application/json; charset=utf-8", body: `{"ttl": 60}`, want: knockRequest{ttl: 60}},
		{name: "upper-case type", ctype: "APPLICATION/JSON", body: `{}`},
		{name: "BOM tolerated", ctype: js, body: "\xef\xbb\xbf{\"ttl\":5}", want: knockRequest{ttl: 5}},
		{name: "nulls mean absent", ctype: js, body: `{"ip_address": null, "ttl": null}`},
		{name: "ip and ttl", ctype: js, body: `{"ip_address":"192.168.1.77/24","ttl":120}`, want: knockRequest{target: "192.168.1.77/24", hasTarget: true, ttl: 120}},
		{name: "duplicate keys: last wins", ctype: js, body: `{"ttl": -1, "ttl": 7}`, want: knockRequest{ttl: 7}},
		{name: "huge ttl is too large, not invalid", ctype: js, body: `{"ttl": 99999999999999999999999}`, want: knockRequest{ttl: maxTTL + 1, ttlTooLarge: true}},
		{name: "ttl above cap", ctype: js, body: `{"ttl": 315360001}`, want: knockRequest{ttl: 315360001, ttlTooLarge: true}},

		{name: "wrong media type", ctype: "application/vnd.api+json", body: "{}", status: 415, msg: msgNotJSON},
		{name: "no media type", ctype: "", body: "{}", status: 415, msg: msgNotJSON},
		{name: "syntax error", ctype: js, body: "{", status: 400, msg: msgMalformed},
		{name: "whitespace only", ctype: js, body: "  ", status: 400, msg: msgMalformed},
		{name: "trailing garbage", ctype: js, body: "{} x", status: 400, msg: msgMalformed},
		{name: "two objects", ctype: js, body: "{}{}", status: 400, msg: msgMalformed},
		{name: "invalid UTF-8", ctype: js, body: "{\"ip_address\":\"\xff\"}", status: 400, msg: msgMalformed},
		{name: "NaN", ctype: js, body: `{"ttl": NaN}`, status: 400, msg: msgMalformed},
		{name: "array", ctype: js, body: "[]", status: 400, msg: msgNotObject},
		{name: "null", ctype: js, body: "null", status: 400, msg: msgNotObject},
		{name: "string", ctype: js, body: `"x"`, status: 400, msg: msgNotObject},
		{name: "ttl zero", ctype: js, body: `{"ttl":0}`, status: 400, msg: msgBadTTL},
		{name: "ttl negative", ctype: js, body: `{"ttl":-50}`, status: 400, msg: msgBadTTL},
		{name: "ttl huge negative", ctype: js, body: `{"ttl":-99999999999999999999999}`, status: 400, msg: msgBadTTL},
		{name: "ttl float", ctype: js, body: `{"ttl":1.0}`, status: 400, msg: msgBadTTL},
		{name: "ttl exponent", ctype: js, body: `{"ttl":1e3}`, status: 400, msg: msgBadTTL},
		{name: "ttl string", ctype: js, body: `{"ttl":"3600"}`, status: 400, msg: msgBadTTL},
		{name: "ttl bool", ctype: js, body: `{"ttl":true}`, status: 400, msg: msgBadTTL},
		{name: "ttl object", ctype: js, body: `{"ttl":{}}`, status: 400, msg: msgBadTTL},
		{name: "ttl error wins over ip error", ctype: js, body: `{"ip_address":"nope","ttl":0}`, status: 400, msg: msgBadTTL},
		{name: "ip too long", ctype: js, body: `{"ip_address":"` + strings.Repeat("1", 101) + `"}`, status: 400, msg: msgIPTooLong},
		{name: "ip not a string", ctype: js, body: `{"ip_address":5}`, status: 400, msg: msgBadIP},
		{name: "ip garbage", ctype: js, body: `{"ip_address":"not-an-ip"}`, status: 400, msg: msgBadIP},
		{name: "ip empty", ctype: js, body: `{"ip_address":""}`, status: 400, msg: msgBadIP},
		{name: "ip leading space", ctype: js, body: `{"ip_address":" 1.2.3.4"}`, status: 400, msg: msgBadIP},
		{name: "ip /33", ctype: js, body: `{"ip_address":"1.2.3.4/33"}`, status: 400, msg: msgBadIP},
		{name: "ip /129", ctype: js, body: `{"ip_address":"2001:db8::/129"}`, status: 400, msg: msgBadIP},
		{name: "ip leading zero octet", ctype: js, body: `{"ip_address":"01.2.3.4"}`, status: 400, msg: msgBadIP},
		{name: "ip error wins over unknown field", ctype: js, body: `{"ip_address":"x","other":1}`, status: 400, msg: msgBadIP},
		{name: "mapped refused", ctype: js, body: `{"ip_address":"::ffff:1.2.3.4"}`, status: 400, msg: "IPv4-mapped"},
		{name: "mapped prefix refused", ctype: js, body: `{"ip_address":"::ffff:0:0/96"}`, status: 400, msg: "IPv4-mapped"},
		{name: "zone refused", ctype: js, body: `{"ip_address":"fe80::1%eth0"}`, status: 400, msg: "zone-scoped"},
		{name: "netmask refused", ctype: js, body: `{"ip_address":"10.0.0.0/255.255.0.0"}`, status: 400, msg: "netmask"},
		{name: "unknown field", ctype: js, body: `{"foo":1}`, status: 400, msg: `unknown field "foo"`},
		{name: "case-sensitive names", ctype: js, body: `{"TTL":5}`, status: 400, msg: `unknown field "TTL"`},
		{name: "case-sensitive ip name", ctype: js, body: `{"Ip_Address":"1.2.3.4"}`, status: 400, msg: `unknown field "Ip_Address"`},
		{name: "field containing ttl is just unknown", ctype: js, body: `{"myttl":5}`, status: 400, msg: `unknown field "myttl"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKnockBody(tc.ctype, []byte(tc.body))
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("error %d %q, want accepted", err.status, err.msg)
				}
				if got != tc.want {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v, want %d %q", got, tc.status, tc.msg)
			}
			if err.status != tc.status || !strings.Contains(err.msg, tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", err.status, err.msg, tc.status, tc.msg)
			}
			if err.status == http.StatusBadRequest && !strings.HasSuffix(err.msg, ".") {
				t.Errorf("message %q should be a sentence", err.msg)
			}
		})
	}
}
