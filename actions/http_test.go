package actions

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPExec(t *testing.T) {
	type seen struct {
		method, path, ctype, source string
		body                        map[string]string
	}
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		if r.URL.Path == "/elsewhere" {
			t.Error("the redirect was followed")
		}
		b, _ := io.ReadAll(r.Body)
		got = seen{method: r.Method, path: r.URL.EscapedPath(), ctype: r.Header.Get("Content-Type"), source: r.Header.Get("X-Source")}
		json.Unmarshal(b, &got.body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, strings.Repeat("r", 100))
	}))
	defer srv.Close()
	hostile := `"}, "admin": true, "x": {"`
	body, _ := json.Marshal(map[string]string{"summary": hostile})
	spec := HTTPSpec{Tool: "ticket", Method: "POST", URL: srv.URL + "/api/a%2F..%2Fadmin", Headers: map[string]string{"X-Source": "medic"},
		Body: body, ExpectStatus: []int{201}, Timeout: 5 * time.Second, MaxOutput: 10}
	x := &HTTPExec{}
	if _, err := x.Do(context.Background(), nil, spec); err == nil {
		t.Fatal("sent without an allow")
	}
	res, err := x.Do(context.Background(), allowed("ticket"), spec)
	if err != nil || !res.OK || res.Status != 201 || res.Body != "rrrrrrrrrr" || res.BodyDropped != 90 {
		t.Fatalf("%v %+v", err, res)
	}
	if got.method != "POST" || got.path != "/api/a%2F..%2Fadmin" || got.ctype != "application/json" || got.source != "medic" || got.body["summary"] != hostile || len(got.body) != 1 {
		t.Fatalf("server saw %+v", got)
	}
	spec.ExpectStatus = []int{200}
	if res, _ := x.Do(context.Background(), allowed("ticket"), spec); res.OK {
		t.Fatal("201 passed an expect_status of 200")
	}
	spec.URL = srv.URL + "/redirect"
	spec.ExpectStatus = nil
	if res, _ := x.Do(context.Background(), allowed("ticket"), spec); res.OK || res.Status != http.StatusFound {
		t.Fatalf("redirect: %+v", res)
	}
}
