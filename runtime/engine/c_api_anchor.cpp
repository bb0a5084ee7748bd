// runtime/engine/c_api_anchor.cpp: gives the shared library libeli a translation unit of its own.
namespace eli { int library_anchor() { return 0; } }
