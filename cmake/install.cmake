# Library install: `cmake --install <build>` (or `make install PREFIX=...`)
# installs the runtime (libcmap.so.N*) and the development files: header,
# libcmap.so, libcmap.a, cmap.pc, the CMake package and the man pages.  The
# two components are the two Debian packages (cmake/package.cmake).
include(CMakePackageConfigHelpers)

install(TARGETS cmap_shared cmap_static EXPORT cmapTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime
    NAMELINK_COMPONENT dev
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/cmap.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)

# CMake package: cmap::cmap (shared) and cmap::cmap_static.  The files
# locate the prefix from their own path, so a DESTDIR-staged or moved tree
# works as is.
set(CMAP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/cmap)
install(EXPORT cmapTargets NAMESPACE cmap:: DESTINATION ${CMAP_CMAKE_DIR}
  COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/cmapConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmapConfig.cmake INSTALL_DESTINATION ${CMAP_CMAKE_DIR})
# SameMajorVersion: from 0.2 on a release only adds to the API and ABI of
# its major version (libcmap.so.0 stays loadable), so find_package(cmap 0.2)
# accepts any later 0.x; an incompatible change bumps the major version and
# the soname together.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmapConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmapConfig.cmake
  ${PROJECT_BINARY_DIR}/cmapConfigVersion.cmake
  DESTINATION ${CMAP_CMAKE_DIR} COMPONENT dev)

# pkg-config: cmap.pc names the prefix it is installed under, which is only
# known at install time (`cmake --install --prefix`, CPack's /usr), so the
# file is written then.  Relative directories follow that prefix; absolute
# ones (-DCMAKE_INSTALL_LIBDIR=/...) are kept.
foreach(d LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
    set(CMAP_PC_${d} "${CMAKE_INSTALL_${d}}")
  else()
    set(CMAP_PC_${d} "\${prefix}/${CMAKE_INSTALL_${d}}")
  endif()
endforeach()
set(CMAP_PC_PREFIX "@CMAKE_INSTALL_PREFIX@")
configure_file(${PROJECT_SOURCE_DIR}/cmake/cmap.pc.in
  ${PROJECT_BINARY_DIR}/cmap.pc.in @ONLY)
install(CODE "configure_file(\"${PROJECT_BINARY_DIR}/cmap.pc.in\" \"${PROJECT_BINARY_DIR}/cmap.pc\" @ONLY)"
  COMPONENT dev)
install(FILES ${PROJECT_BINARY_DIR}/cmap.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# Man pages: one page per function group; every other name in a page's
# NAME line gets a one-line .so page pointing at it, so `man <function>`
# works for every public function (the man_pages test checks the header
# against the installed pages).
file(GLOB CMAP_MAN_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.3)
set(CMAP_MAN_LINKS "")
foreach(page ${CMAP_MAN_PAGES})
  get_filename_component(pname ${page} NAME)
  string(REGEX REPLACE "\\.3$" "" pname "${pname}")
  file(STRINGS ${page} lines)
  list(FIND lines ".SH NAME" at)
  if(at LESS 0)
    message(FATAL_ERROR "${page}: no .SH NAME section")
  endif()
  math(EXPR at "${at} + 1")
  list(GET lines ${at} names)
  string(REGEX REPLACE " *\\\\-.*$" "" names "${names}")
  string(REGEX REPLACE "[ \\\\]" "" names "${names}")
  string(REPLACE "," ";" names "${names}")
  foreach(n ${names})
    if(NOT n STREQUAL pname)
      set(CMAP_MAN_TARGET ${pname})
      configure_file(${PROJECT_SOURCE_DIR}/cmake/man-link.3.in
        ${PROJECT_BINARY_DIR}/man3/${n}.3 @ONLY)
      list(APPEND CMAP_MAN_LINKS ${PROJECT_BINARY_DIR}/man3/${n}.3)
    endif()
  endforeach()
endforeach()
install(FILES ${CMAP_MAN_PAGES} ${CMAP_MAN_LINKS}
  DESTINATION ${CMAKE_INSTALL_MANDIR}/man3 COMPONENT dev)

# `make uninstall` / `cmake --build <build> --target uninstall`: removes
# what the last install from this build put down (its install manifest).
# Not for add_subdirectory() users, whose project may have its own.
if(CMAP_TOP_LEVEL)
  add_custom_target(uninstall
    COMMAND ${CMAKE_COMMAND} -DCMAP_MANIFEST=${PROJECT_BINARY_DIR}/install_manifest.txt
      -P ${PROJECT_SOURCE_DIR}/cmake/uninstall.cmake
    COMMENT "Removing the files listed in install_manifest.txt")
endif()
