#include "ebm/fileio.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ebm/error.h"

namespace ebm {

namespace {
std::string os_reason() { return std::strerror(errno); }

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// The pid of a write_file_atomic temporary's name, or 0 if the name is not one.
pid_t temporary_owner(const std::string& name) {
  const size_t tag = name.rfind(".tmp-");
  if (tag == std::string::npos || tag == 0) return 0;
  const std::string rest = name.substr(tag + 5);
  const size_t dash = rest.find('-');
  if (dash == std::string::npos) return 0;
  const std::string pid = rest.substr(0, dash), n = rest.substr(dash + 1);
  if (!all_digits(pid) || !all_digits(n)) return 0;
  const unsigned long long v = std::stoull(pid);
  return v > 0 && v < (1ull << 31) ? pid_t(v) : 0;
}
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

std::vector<std::string> remove_stale_temporaries(const std::string& dir) {
  std::vector<std::string> removed;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return removed;
  while (const dirent* ent = ::readdir(d)) {
    const std::string name = ent->d_name;
    const pid_t pid = temporary_owner(name);
    if (pid == 0 || pid == ::getpid()) continue;
    // ESRCH: no such process. EPERM means it exists (another user's): keep its file.
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
    const std::string path = dir + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::unlink(path.c_str()) == 0) removed.push_back(name);
  }
  ::closedir(d);
  return removed;
}

}  // namespace ebm
