/* Secret files (API keys, tunnel tokens, passwords, hashed-token lists): the one reader. It opens without
 * following a symbolic link, reads only a regular file, caps the size, and checks who can reach the secret:
 * owned by the user running postern (or root), no group or other bits. The words of its errors name the
 * file and the fix, the same everywhere. */
#ifndef POSTERN_CORE_SECFILE_H
#define POSTERN_CORE_SECFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Group/other bits or another owner are not refused: the caller warns with sfile_exposure instead (a
 * Kubernetes secret volume is 0644 by default, and its directory may be what protects it). */
#define SFILE_SHARED_OK 1u

typedef struct sfile {
	char *data;  /* the whole file, NUL-terminated; wiped by sfile_free */
	size_t len;
	mode_t mode; /* st_mode & 07777 */
	uid_t uid;
} sfile;

/* Reads path whole into *f (at most cap bytes). 0, or a negative errno with "PATH ..." and what to do in err:
 * -ELOOP a symbolic link, -EINVAL not a regular file, -EFBIG over cap, -EPERM open to others or owned by
 * another user (unless SFILE_SHARED_OK), the open or read errno otherwise. */
int sfile_read(const char *path, size_t cap, unsigned flags, sfile *f, char *err, size_t errlen);

/* Why the file read into f is exposed ("PATH is readable by all users (mode 0644): it holds a secret; run
 * chmod 600 PATH"), or nothing (returns 0, msg ""). Returns 1 when there is something to say. */
int sfile_exposure(const sfile *f, const char *path, char *msg, size_t msglen);

/* The first line of f in place: cuts at the first CR or LF; returns its length. */
size_t sfile_first_line(sfile *f);

/* Wipes and frees the data; f may be zeroed or NULL. */
void sfile_free(sfile *f);

#endif
