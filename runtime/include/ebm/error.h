// Errors that reach a user carry a message naming the bad input and, where one exists, the fix.
#pragma once

#include <stdexcept>
#include <string>

namespace ebm {

// Every failure the runtime reports (bad model file, bad argument, I/O) is an ebm::Error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ebm
