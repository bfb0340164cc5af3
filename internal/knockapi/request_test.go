package knockapi

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
		want              Request
	}{
		{name: "empty body, any type", ctype: "text/plain", body: ""},
		{name: "empty object", ctype: js, body: "{}"},
		{name: "charset param", ctype: "application/json; charset=utf-8", body: `{"ttl": 60}`, want: Request{TTL: 60}},
		{name: "upper-case type", ctype: "APPLICATION/JSON", body: `{}`},
		{name: "BOM tolerated", ctype: js, body: "\xef\xbb\xbf{\"ttl\":5}", want: Request{TTL: 5}},
		{name: "nulls mean absent", ctype: js, body: `{"ip_address": null, "ttl": null}`},
		{name: "ip and ttl", ctype: js, body: `{"ip_address":"192.168.1.77/24","ttl":120}`, want: Request{Target: "192.168.1.77/24", HasTarget: true, TTL: 120}},
		{name: "duplicate keys: last wins", ctype: js, body: `{"ttl": -1, "ttl": 7}`, want: Request{TTL: 7}},
		{name: "huge ttl is too large, not invalid", ctype: js, body: `{"ttl": 99999999999999999999999}`, want: Request{TTL: MaxTTL + 1, TTLTooLarge: true}},
		{name: "ttl above cap", ctype: js, body: `{"ttl": 315360001}`, want: Request{TTL: 315360001, TTLTooLarge: true}},

		{name: "wrong media type", ctype: "application/vnd.api+json", body: "{}", status: 415, msg: MsgNotJSON},
		{name: "no media type", ctype: "", body: "{}", status: 415, msg: MsgNotJSON},
		{name: "syntax error", ctype: js, body: "{", status: 400, msg: MsgMalformed},
		{name: "whitespace only", ctype: js, body: "  ", status: 400, msg: MsgMalformed},
		{name: "trailing garbage", ctype: js, body: "{} x", status: 400, msg: MsgMalformed},
		{name: "two objects", ctype: js, body: "{}{}", status: 400, msg: MsgMalformed},
		{name: "invalid UTF-8", ctype: js, body: "{\"ip_address\":\"\xff\"}", status: 400, msg: MsgMalformed},
		{name: "NaN", ctype: js, body: `{"ttl": NaN}`, status: 400, msg: MsgMalformed},
		{name: "array", ctype: js, body: "[]", status: 400, msg: MsgNotObject},
		{name: "null", ctype: js, body: "null", status: 400, msg: MsgNotObject},
		{name: "string", ctype: js, body: `"x"`, status: 400, msg: MsgNotObject},
		{name: "ttl zero", ctype: js, body: `{"ttl":0}`, status: 400, msg: MsgBadTTL},
		{name: "ttl negative", ctype: js, body: `{"ttl":-50}`, status: 400, msg: MsgBadTTL},
		{name: "ttl huge negative", ctype: js, body: `{"ttl":-99999999999999999999999}`, status: 400, msg: MsgBadTTL},
		{name: "ttl float", ctype: js, body: `{"ttl":1.0}`, status: 400, msg: MsgBadTTL},
		{name: "ttl exponent", ctype: js, body: `{"ttl":1e3}`, status: 400, msg: MsgBadTTL},
		{name: "ttl string", ctype: js, body: `{"ttl":"3600"}`, status: 400, msg: MsgBadTTL},
		{name: "ttl bool", ctype: js, body: `{"ttl":true}`, status: 400, msg: MsgBadTTL},
		{name: "ttl object", ctype: js, body: `{"ttl":{}}`, status: 400, msg: MsgBadTTL},
		{name: "ttl error wins over ip error", ctype: js, body: `{"ip_address":"nope","ttl":0}`, status: 400, msg: MsgBadTTL},
		{name: "ip too long", ctype: js, body: `{"ip_address":"` + strings.Repeat("1", 101) + `"}`, status: 400, msg: MsgIPTooLong},
		{name: "ip not a string", ctype: js, body: `{"ip_address":5}`, status: 400, msg: MsgBadIP},
		{name: "ip garbage", ctype: js, body: `{"ip_address":"not-an-ip"}`, status: 400, msg: MsgBadIP},
		{name: "ip empty", ctype: js, body: `{"ip_address":""}`, status: 400, msg: MsgBadIP},
		{name: "ip leading space", ctype: js, body: `{"ip_address":" 1.2.3.4"}`, status: 400, msg: MsgBadIP},
		{name: "ip /33", ctype: js, body: `{"ip_address":"1.2.3.4/33"}`, status: 400, msg: MsgBadIP},
		{name: "ip /129", ctype: js, body: `{"ip_address":"2001:db8::/129"}`, status: 400, msg: MsgBadIP},
		{name: "ip leading zero octet", ctype: js, body: `{"ip_address":"01.2.3.4"}`, status: 400, msg: MsgBadIP},
		{name: "ip error wins over unknown field", ctype: js, body: `{"ip_address":"x","other":1}`, status: 400, msg: MsgBadIP},
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
			got, err := ParseBody(tc.ctype, []byte(tc.body))
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("error %d %q, want accepted", err.Status, err.Message)
				}
				if got != tc.want {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v, want %d %q", got, tc.status, tc.msg)
			}
			if err.Status != tc.status || !strings.Contains(err.Message, tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", err.Status, err.Message, tc.status, tc.msg)
			}
			if err.Status == http.StatusBadRequest && !strings.HasSuffix(err.Message, ".") {
				t.Errorf("message %q should be a sentence", err.Message)
			}
		})
	}
}
