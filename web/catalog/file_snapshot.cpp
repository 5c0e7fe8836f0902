#include "ebm/file_snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ebm/error.h"

namespace ebm {

namespace {

FileIdentity identity_of(const struct stat& st) {
  FileIdentity id;
  id.device = uint64_t(st.st_dev);
  id.inode = uint64_t(st.st_ino);
  id.size = uint64_t(st.st_size);
  id.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + int64_t(st.st_mtim.tv_nsec);
  return id;
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

FileSnapshot read_snapshot(const std::string& path, uint64_t max_bytes) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw Error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) throw Error("cannot stat '" + path + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error("'" + path + "' is not a regular file");
  if (uint64_t(st.st_size) > max_bytes)
    throw Error("'" + path + "' is " + std::to_string(st.st_size) + " bytes, over the " +
                std::to_string(max_bytes) + "-byte limit");
  FileSnapshot snap;
  snap.id = identity_of(st);
  snap.bytes.resize(size_t(st.st_size));
  size_t done = 0;
  while (done < snap.bytes.size()) {
    const ssize_t n = ::read(f.fd, &snap.bytes[done], snap.bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error("cannot read '" + path + "': " + std::strerror(errno));
    if (n == 0) throw Error("'" + path + "' shrank while it was read");
    done += size_t(n);
  }
  return snap;
}

bool file_identity(const std::string& path, FileIdentity* out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  *out = identity_of(st);
  return true;
}

}  // namespace ebm
