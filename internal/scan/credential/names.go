package credential

import (
	"strings"
	"unicode"
)

// secretWords are name words that on their own mark a variable as holding a
// secret.
var secretWords = map[string]bool{
	"PASSWORD": true, "PASSWD": true, "PASS": true, "PASSPHRASE": true,
	"SECRET": true, "TOKEN": true, "APIKEY": true, "CREDENTIAL": true,
	"CREDENTIALS": true, "PWD": true,
}

// keyQualifiers are the words that turn a following "KEY" into a secret
// (API_KEY, PRIVATE_KEY, ...); "KEY" alone (CACHE_KEY) is not one.
var keyQualifiers = map[string]bool{
	"API": true, "ACCESS": true, "PRIVATE": true, "SECRET": true, "SSH": true,
	"SIGNING": true, "ENCRYPTION": true, "MASTER": true, "LICENSE": true,
	"CLIENT": true, "AUTH": true, "ACCOUNT": true, "SERVICE": true,
}

// nonSecretSuffixes are final name words that make a secret-sounding name
// refer to something else: TOKEN_URL, PASSWORD_FILE, SECRET_NAME.
var nonSecretSuffixes = map[string]bool{
	"FILE": true, "PATH": true, "URL": true, "URI": true, "ENDPOINT": true,
	"ID": true, "NAME": true, "USER": true, "USERNAME": true, "TYPE": true,
	"LENGTH": true, "LEN": true, "EXPIRY": true, "EXPIRES": true, "TTL": true,
	"HEADER": true, "ENV": true, "VAR": true, "REF": true, "ARN": true,
	"REGION": true, "HOST": true, "PORT": true, "DIR": true, "MODE": true,
	"ENABLED": true, "REQUIRED": true, "SIZE": true, "VERSION": true,
	"FORMAT": true, "PREFIX": true, "LOCATION": true, "KIND": true,
	"ALGORITHM": true, "POLICY": true, "SOURCE": true, "COMMAND": true,
	"CMD": true, "HELPER": true,
}

// nameWords splits an identifier into upper-case words at '_', '-', '.',
// spaces and lower-to-upper case changes: "clientSecret" → CLIENT, SECRET.
func nameWords(name string) []string {
	var words []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			words = append(words, strings.ToUpper(cur.String()))
			cur.Reset()
		}
	}
	var prev rune
	for _, r := range name {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if unicode.IsUpper(r) && unicode.IsLower(prev) {
				flush()
			}
			cur.WriteRune(r)
		default:
			flush()
		}
		prev = r
	}
	flush()
	return words
}

// IsSecretName reports whether a variable or key name says it holds a
// secret: it contains a word such as PASSWORD, SECRET or TOKEN, or a
// qualified KEY (API_KEY, PRIVATE_KEY), and does not end in a word naming
// something else (TOKEN_URL, PASSWORD_FILE). PWD and OLDPWD, the shell's
// working directories, are not secret names.
func IsSecretName(name string) bool {
	words := nameWords(name)
	if len(words) == 0 {
		return false
	}
	if up := strings.ToUpper(name); up == "PWD" || up == "OLDPWD" {
		return false
	}
	if nonSecretSuffixes[words[len(words)-1]] && len(words) > 1 {
		return false
	}
	for i, w := range words {
		if secretWords[w] || hasSecretSuffix(w) {
			return true
		}
		if w == "KEY" && i > 0 && keyQualifiers[words[i-1]] {
			return true
		}
	}
	return false
}

// hasSecretSuffix catches run-together names: PGPASSWORD, CLIENTSECRET,
// APITOKEN.
func hasSecretSuffix(w string) bool {
	for _, s := range []string{"PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY"} {
		if strings.HasSuffix(w, s) {
			return true
		}
	}
	return false
}

// placeholders are values that stand in for a secret in examples and test
// fixtures; a credential set to one of them is not reported.
var placeholders = map[string]bool{
	"changeme": true, "change-me": true, "change_me": true, "changeit": true,
	"password": true, "passwd": true, "secret": true, "example": true,
	"test": true, "testing": true, "dummy": true, "placeholder": true,
	"redacted": true, "none": true, "null": true, "nil": true, "todo": true,
	"fixme": true, "postgres": true, "root": true, "admin": true,
	"guest": true, "foo": true, "bar": true, "foobar": true, "token": true,
	"mysecret": true, "mypassword": true, "your-token": true,
	"your_token": true, "your-password": true, "your_password": true,
}

// IsPlaceholder reports whether a value is an obvious stand-in rather than a
// real secret: empty, a well-known placeholder word (changeme, password,
// postgres, ...), a single repeated character (xxxxx, *****), or wrapped in
// angle brackets (<your-token>).
func IsPlaceholder(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return true
	}
	if placeholders[strings.ToLower(v)] {
		return true
	}
	if strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">") {
		return true
	}
	first := v[0]
	for i := 1; i < len(v); i++ {
		if v[i] != first {
			return false
		}
	}
	return true
}

// IsReference reports whether a configuration value refers to a secret held
// elsewhere instead of holding it: a GitHub Actions expression (${{ … }}),
// or a shell or CI variable reference ($VAR, ${VAR}).
func IsReference(v string) bool {
	if strings.Contains(v, "${{") {
		return true
	}
	for i := 0; i+1 < len(v); i++ {
		if v[i] != '$' {
			continue
		}
		c := v[i+1]
		if c == '$' { // "$$": an escaped dollar (GitLab) or the shell's PID
			i++
			continue
		}
		if c == '{' || c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' {
			return true
		}
	}
	return false
}
