package remotetest

import (
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// STS is a fake AWS Security Token Service answering
// AssumeRoleWithWebIdentity in the query API (form POST, Version
// 2011-06-15) with its XML responses and error documents. It trusts one
// OIDC issuer, verifying each web identity token through that issuer's
// discovery document for audience sts.amazonaws.com, as an IAM OIDC identity
// provider does.
type STS struct {
	URL string

	v  *verifier
	mu sync.Mutex
	// issued maps access key ids to what was issued.
	issued map[string]STSSession
}

// STSSession is one issued set of temporary credentials.
type STSSession struct {
	RoleARN, SessionName, Subject string
	Secret, Token                 string
	Expiration                    time.Time
}

// NewSTS starts a fake STS trusting iss, stopped when the test ends.
func NewSTS(t testing.TB, iss *Issuer) *STS {
	t.Helper()
	s := &STS{v: iss.verifier(t, "sts.amazonaws.com"), issued: map[string]STSSession{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Session returns what was issued under access key id.
func (s *STS) Session(accessKeyID string) (STSSession, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.issued[accessKeyID]
	return v, ok
}

var (
	sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	roleARNRE     = regexp.MustCompile(`^arn:aws:iam::\d{12}:role/[\w+=,.@/-]+$`)
)

type stsError struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
	Type    string   `xml:"Error>Type"`
	Code    string   `xml:"Error>Code"`
	Message string   `xml:"Error>Message"`
	ReqID   string   `xml:"RequestId"`
}

type stsResponse struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ AssumeRoleWithWebIdentityResponse"`
	Result  struct {
		Subject  string `xml:"SubjectFromWebIdentityToken"`
		Audience string `xml:"Audience"`
		User     struct {
			Arn string `xml:"Arn"`
			ID  string `xml:"AssumedRoleId"`
		} `xml:"AssumedRoleUser"`
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string `xml:"SecretAccessKey"`
			SessionToken    string `xml:"SessionToken"`
			Expiration      string `xml:"Expiration"`
		} `xml:"Credentials"`
		Provider string `xml:"Provider"`
	} `xml:"AssumeRoleWithWebIdentityResult"`
	ReqID string `xml:"ResponseMetadata>RequestId"`
}

func (s *STS) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(stsError{Type: "Sender", Code: code, Message: msg, ReqID: rand.Text()})
}

func (s *STS) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		s.fail(w, http.StatusBadRequest, "InvalidAction", "expected a form POST")
		return
	}
	f := r.PostForm
	if f.Get("Action") != "AssumeRoleWithWebIdentity" || f.Get("Version") != "2011-06-15" {
		s.fail(w, http.StatusBadRequest, "InvalidAction", "Could not find operation "+f.Get("Action")+" for version "+f.Get("Version"))
		return
	}
	role, name := f.Get("RoleArn"), f.Get("RoleSessionName")
	if !roleARNRE.MatchString(role) {
		s.fail(w, http.StatusBadRequest, "ValidationError", "1 validation error detected: Value at 'roleArn' failed to satisfy constraint")
		return
	}
	if !sessionNameRE.MatchString(name) {
		s.fail(w, http.StatusBadRequest, "ValidationError", "1 validation error detected: Value '"+name+"' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*")
		return
	}
	dur := 3600
	if d := f.Get("DurationSeconds"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 900 || n > 43200 {
			s.fail(w, http.StatusBadRequest, "ValidationError", "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900")
			return
		}
		dur = n
	}
	sub, err := s.v.verify(r.Context(), f.Get("WebIdentityToken"))
	if err != nil {
		s.fail(w, http.StatusBadRequest, "InvalidIdentityToken", "Couldn't verify the web identity token: "+err.Error())
		return
	}
	akid := "ASIA" + rand.Text()[:16]
	sess := STSSession{RoleARN: role, SessionName: name, Subject: sub, Secret: rand.Text(), Token: rand.Text() + rand.Text(),
		Expiration: time.Now().Add(time.Duration(dur) * time.Second).UTC().Truncate(time.Second)}
	s.mu.Lock()
	s.issued[akid] = sess
	s.mu.Unlock()
	var out stsResponse
	out.Result.Subject, out.Result.Audience, out.Result.Provider = sub, "sts.amazonaws.com", "fake-issuer"
	out.Result.User.Arn = fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", role[13:25], role[strLastSlash(role)+1:], name)
	out.Result.User.ID = "AROA" + rand.Text()[:12] + ":" + name
	out.Result.Credentials.AccessKeyID = akid
	out.Result.Credentials.SecretAccessKey = sess.Secret
	out.Result.Credentials.SessionToken = sess.Token
	out.Result.Credentials.Expiration = sess.Expiration.Format(time.RFC3339)
	out.ReqID = rand.Text()
	w.Header().Set("Content-Type", "text/xml")
	_ = xml.NewEncoder(w).Encode(out)
}

func strLastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}
