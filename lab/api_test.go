package lab

import (
	"fmt"
	"go/types"
	"slices"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// publicPackages are the packages whose exported names are the API.
var publicPackages = []string{"github.com/lab-lb/lab/lab", "github.com/lab-lb/lab/lab/labtest"}

// TestAPIUsesNoInternalType fails when an exported name of the public
// packages (a function's signature, an exported type's fields and
// methods, a variable's or constant's type, recursively) mentions a type
// of an internal package, which a user could not name: the public API
// must stand on its own.
func TestAPIUsesNoInternalType(t *testing.T) {
	pkgs, err := packages.Load(&packages.Config{Mode: packages.NeedName | packages.NeedTypes}, publicPackages...)
	if err != nil {
		t.Fatalf("load the public packages: %v", err)
	}
	var leaks []string
	for _, p := range pkgs {
		for _, e := range p.Errors {
			t.Errorf("%s: %v", p.PkgPath, e)
		}
		if p.Types == nil {
			continue
		}
		leaks = append(leaks, internalTypesOf(p.Types)...)
	}
	slices.Sort(leaks)
	for _, l := range slices.Compact(leaks) {
		t.Errorf("the public API uses an internal type: %s", l)
	}
}

// TestInternalTypesOfFindsLeaks checks the walk of
// TestAPIUsesNoInternalType on a package that leaks in every way it
// looks for.
func TestInternalTypesOfFindsLeaks(t *testing.T) {
	internal := types.NewPackage("example.com/m/internal/x", "x")
	secret := types.NewNamed(types.NewTypeName(0, internal, "Secret", nil), types.Typ[types.Int], nil)
	pub := types.NewPackage("example.com/m/pub", "pub")
	scope := pub.Scope()
	field := func(name string, typ types.Type) *types.Var { return types.NewField(0, pub, name, typ, false) }
	// A struct with the internal type deep in an exported field, and one in
	// an unexported field, which is no leak.
	inner := types.NewNamed(types.NewTypeName(0, pub, "Inner", nil),
		types.NewStruct([]*types.Var{field("M", types.NewMap(types.Typ[types.String], types.NewSlice(secret)))}, nil), nil)
	outer := types.NewNamed(types.NewTypeName(0, pub, "Outer", nil),
		types.NewStruct([]*types.Var{field("In", types.NewPointer(inner)), field("hidden", secret)}, nil), nil)
	scope.Insert(outer.Obj())
	scope.Insert(inner.Obj())
	// A method whose result is internal.
	recv := types.NewVar(0, pub, "o", types.NewPointer(outer))
	res := types.NewTuple(types.NewVar(0, pub, "", secret))
	outer.AddMethod(types.NewFunc(0, pub, "Get", types.NewSignatureType(recv, nil, nil, nil, res, false)))
	// A function taking it, a variable and an alias of it.
	params := types.NewTuple(types.NewVar(0, pub, "s", types.NewSlice(secret)))
	scope.Insert(types.NewFunc(0, pub, "Take", types.NewSignatureType(nil, nil, nil, params, nil, true)))
	scope.Insert(types.NewVar(0, pub, "V", secret))
	scope.Insert(types.NewTypeName(0, pub, "A", secret))
	scope.Insert(types.NewFunc(0, pub, "fine", types.NewSignatureType(nil, nil, nil, params, nil, true)))

	got := internalTypesOf(pub)
	want := []string{
		"pub.A: example.com/m/internal/x.Secret",
		"pub.Inner.M: map[string][]example.com/m/internal/x.Secret",
		"pub.Outer.Get: func() example.com/m/internal/x.Secret",
		"pub.Take: func(s ...example.com/m/internal/x.Secret)",
		"pub.V: example.com/m/internal/x.Secret",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("internalTypesOf() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// internalTypesOf returns, for every exported name of p that mentions an
// internal type, "NAME: TYPE".
func internalTypesOf(p *types.Package) []string {
	w := &apiWalker{pkg: p, seen: map[*types.Named]bool{}}
	scope := p.Scope()
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		w.check(p.Name()+"."+name, obj.Type())
	}
	return w.leaks
}

// apiWalker walks the types an exported name makes visible.
type apiWalker struct {
	pkg   *types.Package
	seen  map[*types.Named]bool
	leaks []string
}

// check records where when typ mentions an internal type, and walks into
// the named types of the public packages that typ mentions.
func (w *apiWalker) check(where string, typ types.Type) {
	if mentionsInternal(typ, map[types.Type]bool{}) {
		what := typ.String()
		if u := types.Unalias(typ); u != typ {
			what += " = " + u.String()
		}
		w.leaks = append(w.leaks, where+": "+what)
	}
	w.walk(where, typ)
}

// walk follows typ into the exported fields and methods of the named
// types of the public package it mentions.
func (w *apiWalker) walk(where string, typ types.Type) {
	switch t := types.Unalias(typ).(type) {
	case *types.Named:
		if w.seen[t] || t.Obj().Pkg() != w.pkg {
			return
		}
		w.seen[t] = true
		name := w.pkg.Name() + "." + t.Obj().Name()
		if st, ok := t.Underlying().(*types.Struct); ok {
			for f := range st.Fields() {
				if f.Exported() {
					w.check(name+"."+f.Name(), f.Type())
				}
			}
		} else {
			w.walk(name, t.Underlying())
		}
		for m := range t.Methods() {
			if m.Exported() {
				w.check(name+"."+m.Name(), m.Type())
			}
		}
	case *types.Pointer:
		w.walk(where, t.Elem())
	case *types.Slice:
		w.walk(where, t.Elem())
	case *types.Array:
		w.walk(where, t.Elem())
	case *types.Map:
		w.walk(where, t.Key())
		w.walk(where, t.Elem())
	case *types.Chan:
		w.walk(where, t.Elem())
	case *types.Signature:
		for v := range t.Params().Variables() {
			w.walk(where, v.Type())
		}
		for v := range t.Results().Variables() {
			w.walk(where, v.Type())
		}
	case *types.Struct:
		for f := range t.Fields() {
			if f.Exported() {
				w.check(fmt.Sprintf("%s.%s", where, f.Name()), f.Type())
			}
		}
	case *types.Interface:
		for m := range t.Methods() {
			if m.Exported() {
				w.check(where+"."+m.Name(), m.Type())
			}
		}
	}
}

// mentionsInternal reports whether typ is or holds (in its elements,
// parameters, results or anonymous struct fields) a type named in an
// internal package.
func mentionsInternal(typ types.Type, seen map[types.Type]bool) bool {
	if seen[typ] {
		return false
	}
	seen[typ] = true
	switch t := typ.(type) {
	case *types.Alias:
		return isInternal(t.Obj().Pkg()) || mentionsInternal(types.Unalias(t), seen)
	case *types.Named:
		if isInternal(t.Obj().Pkg()) {
			return true
		}
		for a := range t.TypeArgs().Types() {
			if mentionsInternal(a, seen) {
				return true
			}
		}
		return false
	case *types.Pointer:
		return mentionsInternal(t.Elem(), seen)
	case *types.Slice:
		return mentionsInternal(t.Elem(), seen)
	case *types.Array:
		return mentionsInternal(t.Elem(), seen)
	case *types.Map:
		return mentionsInternal(t.Key(), seen) || mentionsInternal(t.Elem(), seen)
	case *types.Chan:
		return mentionsInternal(t.Elem(), seen)
	case *types.Signature:
		for v := range t.Params().Variables() {
			if mentionsInternal(v.Type(), seen) {
				return true
			}
		}
		for v := range t.Results().Variables() {
			if mentionsInternal(v.Type(), seen) {
				return true
			}
		}
		return false
	case *types.Struct:
		for f := range t.Fields() {
			if f.Exported() && mentionsInternal(f.Type(), seen) {
				return true
			}
		}
		return false
	case *types.Interface:
		for m := range t.Methods() {
			if m.Exported() && mentionsInternal(m.Type(), seen) {
				return true
			}
		}
		return false
	}
	return false
}

// isInternal reports whether p is an internal package (its path has an
// "internal" element).
func isInternal(p *types.Package) bool {
	return p != nil && (strings.Contains(p.Path(), "/internal/") || strings.HasSuffix(p.Path(), "/internal"))
}
