package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

type flagTest struct {
	Name  string   `yaml:"name" flag:"name" usage:"a name"`
	TTL   Duration `yaml:"ttl" flag:"ttl" usage:"a ttl"`
	UIDs  []uint32 `yaml:"uids" flag:"uids" usage:"uids"`
	Inner struct {
		Mode string `yaml:"mode" flag:"inner-mode" usage:"a mode"`
	} `yaml:"inner"`
	Plugins Plugins `yaml:"plugins"`
}

func TestFlagsMerge(t *testing.T) {
	def := flagTest{Name: "default-name", TTL: Duration(Day)}
	def.Inner.Mode = "default-mode"
	tests := []struct {
		name string
		file string
		args []string
		want func(*flagTest)
	}{
		{"defaults only", "", nil, func(w *flagTest) { *w = def }},
		{"file over defaults", "name: file\ninner: {mode: fm}\n", nil, func(w *flagTest) {
			*w = def
			w.Name, w.Inner.Mode = "file", "fm"
		}},
		{"flags over file", "name: file\nttl: 1h\n", []string{"--name", "flag", "--inner-mode", "x", "--uids", "1,2"}, func(w *flagTest) {
			*w = def
			w.Name, w.TTL, w.Inner.Mode, w.UIDs = "flag", Duration(3600e9), "x", []uint32{1, 2}
		}},
		{"a flag set to the default still wins over the file", "name: file\n", []string{"--name", "default-name"}, func(w *flagTest) {
			*w = def
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			f := BindFlags(fs, def)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var got flagTest
			if err := Decode([]byte(tt.file), &got); err != nil {
				t.Fatal(err)
			}
			f.Merge(&got)
			var want flagTest
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Merge = %+v, want %+v", got, want)
			}
		})
	}
}

func TestFlagsKeysAndNames(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f := BindFlags(fs, flagTest{})
	if err := fs.Parse([]string{"--name", "x"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"name": "name", "ttl": "ttl", "uids": "uids", "inner-mode": "inner.mode"}
	if got := f.Keys(); !reflect.DeepEqual(got, want) {
		t.Errorf("Keys() = %v, want %v", got, want)
	}
	if got := f.Name("name"); got != "--name" {
		t.Errorf("Name(set flag) = %q", got)
	}
	if got := f.Name("inner-mode"); got != "--inner-mode (inner.mode)" {
		t.Errorf("Name(unset flag) = %q", got)
	}
	// Help shows the default in ParseDuration's syntax, and none for zero.
	fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
	BindFlags(fs, flagTest{TTL: Duration(Day)})
	usage := fs.FlagUsages()
	if !strings.Contains(usage, "a ttl (default 1d)") || strings.Contains(usage, "a name (default") {
		t.Errorf("usage:\n%s", usage)
	}
}

func TestBindFlagsRejectsUnsupportedTypes(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("BindFlags accepted a float field")
		}
	}()
	type bad struct {
		F float64 `yaml:"f" flag:"f"`
	}
	BindFlags(pflag.NewFlagSet("t", pflag.ContinueOnError), bad{})
}
