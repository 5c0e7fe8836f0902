#include "ebm/fileio.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ebm/error.h"

namespace ebm {

namespace {
std::string os_reason() { return std::strerror(errno); }
}  // namespace

std::vector<uint8_t> read_file(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open '" + path + "': " + os_reason());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("cannot read '" + path + "': not a regular file");
  }
  if (uint64_t(st.st_size) > max_bytes) {
    ::close(fd);
    throw Error("'" + path + "' is " + std::to_string(st.st_size) + " bytes, more than the " +
                std::to_string(max_bytes) + "-byte limit");
  }
  std::vector<uint8_t> bytes(size_t(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string reason = got < 0 ? os_reason() : "file shrank while reading";
      ::close(fd);
      throw Error("cannot read '" + path + "': " + reason);
    }
    done += size_t(got);
  }
  ::close(fd);
  return bytes;
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp =
      path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write '" + path + "': " + os_reason());
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < size) {
    const ssize_t put = ::write(fd, p + done, size - done);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      const std::string reason = os_reason();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error("cannot write '" + path + "': " + reason);
    }
    done += size_t(put);
  }
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
    const std::string reason = os_reason();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error("cannot flush '" + path + "': " + reason);
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = os_reason();
    ::unlink(tmp.c_str());
    throw Error("cannot rename '" + tmp + "' to '" + path + "': " + reason);
  }
}

}  // namespace ebm
