// runtime/model/model_dir.h: containment of the files eli opens inside a model directory
// (RELIABILITY item 5, issue 20 item 7).
//
// Threat: a model directory comes from elsewhere (a Hub download, a tarball, a shared disk) and may
// hold a hostile entry: a symlink to a file of the user's (~/.ssh/id_rsa, /etc/passwd) whose bytes
// would then reach an error message, a tokenizer or a prompt; a FIFO or a device that blocks the
// load forever; a link loop. Rule: every file eli opens by name inside a model directory must
//   - resolve (realpath, every symlink followed) to a path inside the directory itself, or, when
//     the directory is a Hugging Face cache snapshot (`.../models--ORG--NAME/snapshots/REV`), inside
//     that repo's `blobs/` (huggingface_hub stores every snapshot file as `../../blobs/HASH`);
//   - be a regular file (checked on the opened descriptor, opened O_NONBLOCK so a FIFO cannot
//     block the open itself).
// Symlinks that stay inside are fine (a file linked to a sibling, the HF cache layout). A file the
// user names directly (`eli generate /x/model.gguf`) is the user's choice and may live anywhere;
// it still has to be a regular file. Every failure is eli::Error(kModelLoad) naming the entry, and
// no message ever quotes a byte of the file.
#pragma once

#include <string>

namespace eli {

// The directory that model files must resolve inside.
struct ModelRoot {
  std::string dir;       // as the user named it (used in messages and in the paths handed out)
  std::string real;      // realpath(dir)
  std::string hf_blobs;  // realpath(<repo>/blobs) for a HF cache snapshot directory, else ""
};

// Throws kModelLoad when `dir` is missing, not a directory, or cannot be resolved.
ModelRoot model_root(const std::string& dir);

// Whether dir/rel exists as a directory entry (lstat: a dangling symlink counts as present, so
// that opening it reports the broken link rather than "missing").
bool entry_exists(const ModelRoot& root, const std::string& rel);

// Checks dir/rel against the rule above and returns the resolved path to open (no symlinks in
// it). `what` names the entry in messages (default: the path dir/rel). Throws kModelLoad when it is
// missing, cannot be resolved (dangling link, loop, permission), resolves outside the root or is
// not a regular file.
std::string contained_path(const ModelRoot& root, const std::string& rel, const std::string& what = "");

// Whether `path` lies strictly inside directory `root` (both absolute, normalised).
bool path_under(const std::string& path, const std::string& root);

}  // namespace eli
