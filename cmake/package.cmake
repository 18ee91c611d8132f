# `make package`: Debian packages from the install components.
#   libcmap0     runtime: libcmap.so.0 and libcmap.so.0.x.y
#   libcmap-dev  header, libcmap.so, libcmap.a, cmap.pc, CMake package, man
# cmap-perf (component bench) is in neither.  Configure with
# -DCMAKE_INSTALL_PREFIX=/usr so GNUInstallDirs picks the multiarch libdir.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME cmap)
set(CPACK_PACKAGE_VENDOR "cmap")
set(CPACK_PACKAGE_CONTACT "cmap maintainers <cmap@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "lock-free concurrent hash map for C11")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CMAP_DEB_VERSION ${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE})

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libcmap${PROJECT_VERSION_MAJOR})
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
  "lock-free concurrent hash map for C11 - shared library
 A hash array mapped trie updated with compare-and-swap and its own
 epoch-based memory reclamation: wait-free gets, lock-free sets and removes.
 This package holds the shared library.")
# Dependencies from the ELF file (dpkg-shlibdeps); shlibs file and ldconfig
# trigger generated.  '>=': later 0.x releases keep the ABI (see
# cmapConfigVersion.cmake's SameMajorVersion).
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libcmap-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# The unversioned libcmap.so symlink points into libcmap0: exactly this one.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "libcmap${PROJECT_VERSION_MAJOR} (= ${CMAP_DEB_VERSION})")
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "lock-free concurrent hash map for C11 - development files
 A hash array mapped trie updated with compare-and-swap and its own
 epoch-based memory reclamation: wait-free gets, lock-free sets and removes.
 This package holds the header, the static library, pkg-config and CMake
 package files and the manual pages.")
include(CPack)
