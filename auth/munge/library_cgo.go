//go:build cgo

package munge

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

// The declarations below restate the parts of munge.h the package uses, so
// that it builds where libmunge-dev is not installed.
typedef void *loom_munge_ctx;

enum {
	LOOM_EMUNGE_NO_MEMORY = 5,
	LOOM_MUNGE_OPT_TTL = 4,
	LOOM_MUNGE_OPT_ENCODE_TIME = 6,
	LOOM_MUNGE_OPT_DECODE_TIME = 7,
	LOOM_MUNGE_OPT_SOCKET = 8,
};

typedef struct {
	void *handle;
	int (*encode)(char **cred, loom_munge_ctx ctx, const void *buf, int len);
	int (*decode)(const char *cred, loom_munge_ctx ctx, void **buf, int *len, uid_t *uid, gid_t *gid);
	const char *(*strerror)(int err);
	loom_munge_ctx (*ctx_create)(void);
	void (*ctx_destroy)(loom_munge_ctx ctx);
	const char *(*ctx_strerror)(loom_munge_ctx ctx);
	int (*ctx_set)(loom_munge_ctx ctx, int opt, ...);
	int (*ctx_get)(loom_munge_ctx ctx, int opt, ...);
} loom_munge_lib;

// loom_munge_open fills lib from the library called name. It returns NULL
// on success, else what failed; the text is copied with strdup and the
// caller frees it.
static char *loom_munge_open(const char *name, loom_munge_lib *lib) {
	memset(lib, 0, sizeof(*lib));
	dlerror();
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		return strdup(e != NULL ? e : "dlopen failed");
	}
	struct { void **slot; const char *sym; } syms[] = {
		{(void **)&lib->encode, "munge_encode"},
		{(void **)&lib->decode, "munge_decode"},
		{(void **)&lib->strerror, "munge_strerror"},
		{(void **)&lib->ctx_create, "munge_ctx_create"},
		{(void **)&lib->ctx_destroy, "munge_ctx_destroy"},
		{(void **)&lib->ctx_strerror, "munge_ctx_strerror"},
		{(void **)&lib->ctx_set, "munge_ctx_set"},
		{(void **)&lib->ctx_get, "munge_ctx_get"},
	};
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		*syms[i].slot = dlsym(h, syms[i].sym);
		if (*syms[i].slot == NULL) {
			dlclose(h);
			memset(lib, 0, sizeof(*lib));
			size_t n = strlen(name) + strlen(syms[i].sym) + 32;
			char *msg = malloc(n);
			if (msg != NULL) {
				snprintf(msg, n, "%s has no symbol %s", name, syms[i].sym);
			}
			return msg;
		}
	}
	lib->handle = h;
	return NULL;
}

// loom_munge_context returns a context for socket (NULL for the default)
// and ttl (0 for the default), or NULL with *err set.
static loom_munge_ctx loom_munge_context(const loom_munge_lib *lib, const char *socket, int ttl, int *err, char **detail) {
	loom_munge_ctx ctx = lib->ctx_create();
	if (ctx == NULL) {
		*err = LOOM_EMUNGE_NO_MEMORY;
		return NULL;
	}
	*err = 0;
	if (socket != NULL) {
		*err = lib->ctx_set(ctx, LOOM_MUNGE_OPT_SOCKET, socket);
	}
	if (*err == 0 && ttl != 0) {
		*err = lib->ctx_set(ctx, LOOM_MUNGE_OPT_TTL, ttl);
	}
	if (*err != 0) {
		const char *s = lib->ctx_strerror(ctx);
		if (s != NULL) {
			*detail = strdup(s);
		}
		lib->ctx_destroy(ctx);
		return NULL;
	}
	return ctx;
}

static int loom_munge_encode(const loom_munge_lib *lib, const char *socket, int ttl,
		const void *buf, int len, char **cred, char **detail) {
	int err;
	*cred = NULL;
	*detail = NULL;
	loom_munge_ctx ctx = loom_munge_context(lib, socket, ttl, &err, detail);
	if (ctx == NULL) {
		return err;
	}
	err = lib->encode(cred, ctx, buf, len);
	if (err != 0) {
		const char *s = lib->ctx_strerror(ctx);
		if (s != NULL) {
			*detail = strdup(s);
		}
	}
	lib->ctx_destroy(ctx);
	return err;
}

typedef struct {
	void *payload;
	int len;
	uid_t uid;
	gid_t gid;
	time_t encoded;
	time_t decoded;
	int ttl;
} loom_munge_decoded;

static int loom_munge_decode(const loom_munge_lib *lib, const char *socket, const char *cred,
		loom_munge_decoded *out, char **detail) {
	int err;
	memset(out, 0, sizeof(*out));
	*detail = NULL;
	loom_munge_ctx ctx = loom_munge_context(lib, socket, 0, &err, detail);
	if (ctx == NULL) {
		return err;
	}
	err = lib->decode(cred, ctx, &out->payload, &out->len, &out->uid, &out->gid);
	if (err == 0) {
		lib->ctx_get(ctx, LOOM_MUNGE_OPT_ENCODE_TIME, &out->encoded);
		lib->ctx_get(ctx, LOOM_MUNGE_OPT_DECODE_TIME, &out->decoded);
		lib->ctx_get(ctx, LOOM_MUNGE_OPT_TTL, &out->ttl);
	} else {
		const char *s = lib->ctx_strerror(ctx);
		if (s != NULL) {
			*detail = strdup(s);
		}
	}
	lib->ctx_destroy(ctx);
	return err;
}

static const char *loom_munge_strerror(const loom_munge_lib *lib, int err) {
	return lib->strerror(err);
}
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"
)

// library is libmunge loaded with dlopen. It is never unloaded.
type library struct {
	c C.loom_munge_lib
}

// openLibrary loads name and looks up the functions the package calls.
func openLibrary(name string) (*library, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	lib := new(library)
	if msg := C.loom_munge_open(cname, &lib.c); msg != nil {
		defer C.free(unsafe.Pointer(msg))
		return nil, fmt.Errorf("%w (%s)", ErrNoLibrary, C.GoString(msg))
	}
	return lib, nil
}

func (l *library) encode(socket string, ttl int, payload []byte) (string, error) {
	csocket := cSocket(socket)
	defer C.free(unsafe.Pointer(csocket))
	var buf unsafe.Pointer
	if len(payload) > 0 {
		buf = C.CBytes(payload)
		defer C.free(buf)
	}
	var cred, detail *C.char
	code := C.loom_munge_encode(&l.c, csocket, C.int(ttl), buf, C.int(len(payload)), &cred, &detail)
	if cred != nil {
		defer C.free(unsafe.Pointer(cred))
	}
	if code != 0 {
		return "", l.failure("encode", socket, code, detail)
	}
	return C.GoString(cred), nil
}

func (l *library) decode(socket, cred string) (Credential, error) {
	csocket := cSocket(socket)
	defer C.free(unsafe.Pointer(csocket))
	ccred := C.CString(cred)
	defer C.free(unsafe.Pointer(ccred))
	var out C.loom_munge_decoded
	var detail *C.char
	code := C.loom_munge_decode(&l.c, csocket, ccred, &out, &detail)
	if out.payload != nil {
		defer C.free(out.payload)
	}
	if code != 0 {
		return Credential{}, l.failure("decode", socket, code, detail)
	}
	return Credential{
		UID:     uint32(out.uid),
		GID:     uint32(out.gid),
		Payload: C.GoBytes(out.payload, out.len),
		Encoded: time.Unix(int64(out.encoded), 0),
		Decoded: time.Unix(int64(out.decoded), 0),
		TTL:     time.Duration(out.ttl) * time.Second,
	}, nil
}

// failure builds the *Error for code, preferring the context's detailed
// message and freeing it.
func (l *library) failure(op, socket string, code C.int, detail *C.char) error {
	msg := C.GoString(C.loom_munge_strerror(&l.c, code))
	if detail != nil {
		msg = C.GoString(detail)
		C.free(unsafe.Pointer(detail))
	}
	return &Error{Op: op, Socket: socketName(socket), Code: int(code), Message: msg}
}

// cSocket returns socket as a C string, or NULL for libmunge's default.
func cSocket(socket string) *C.char {
	if socket == "" {
		return nil
	}
	return C.CString(socket)
}

// socketName returns the socket a call uses, for messages.
func socketName(socket string) string {
	if socket == "" {
		return DefaultSocket
	}
	return socket
}
